// Assertions on text shared by the core's tests and the unit tests. Header
// only and free of system libraries, so the core's test binary can use it.
#pragma once

#include <string>

#include <gtest/gtest.h>

namespace xpra_broker::testing {

// "haystack contains needle", with both strings in the failure message.
inline ::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << haystack << "' does not contain '" << needle << "'";
}

}  // namespace xpra_broker::testing
