// Small helpers shared by the unit tests.
#pragma once

#include <stdlib.h>
#include <sys/capability.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "text_assertions.h"

namespace xpra_broker::testing {

// A directory from mkdtemp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "xpra-broker-unit-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Makes every permitted capability effective again. Tests that run as root
// call this first: privileged_ops.h's CapabilityBracket lowers the capability
// it brackets when done, even when the process had it effective before, so
// one test's broker call would otherwise leave the next test's setup (chown,
// chmod of files it does not own) without CAP_CHOWN / CAP_FOWNER.
inline bool restore_effective_capabilities() {
  cap_t caps = cap_get_proc();
  if (!caps) return false;
  for (cap_value_t cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (!CAP_IS_SUPPORTED(cap)) continue;
    cap_flag_value_t permitted = CAP_CLEAR;
    if (cap_get_flag(caps, cap, CAP_PERMITTED, &permitted) == 0 && permitted == CAP_SET)
      cap_set_flag(caps, CAP_EFFECTIVE, 1, &cap, CAP_SET);
  }
  const bool ok = cap_set_proc(caps) == 0;
  cap_free(caps);
  return ok;
}

inline bool capability_effective(cap_value_t cap) {
  cap_t caps = cap_get_proc();
  if (!caps) return false;
  cap_flag_value_t value = CAP_CLEAR;
  cap_get_flag(caps, cap, CAP_EFFECTIVE, &value);
  cap_free(caps);
  return value == CAP_SET;
}

}  // namespace xpra_broker::testing
