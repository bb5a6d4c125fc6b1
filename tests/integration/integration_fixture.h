// GoogleTest glue over broker_harness.h: a fixture that owns one broker and
// prints its log when a test fails, plus JSON helpers for the client's
// `list --json` and `status --json`.
#pragma once

#include <gtest/gtest.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "broker_harness.h"

namespace xpra_broker::integration {

inline constexpr const char* kAlice = "xpb-alice";
inline constexpr const char* kBob = "xpb-bob";
inline constexpr const char* kMallory = "xpb-mallory";  // not in xpb-users

class BrokerTest : public ::testing::Test {
 protected:
  // Starts a broker with `options` ("--displays=A-B" and the like). Each test
  // uses its own slice of the suite's display range 200-399, so tests can
  // run in parallel.
  BrokerProcess& start_broker(std::vector<std::string> options) {
    broker_ = std::make_unique<BrokerProcess>(std::move(options));
    broker_->start();
    return *broker_;
  }

  void TearDown() override {
    if (broker_ && HasFailure())
      std::cout << "---- xpra-brokerd log (" << broker_->log_path() << ") ----\n"
                << broker_->log() << "---- end of log ----\n";
  }

  // Parses a client's JSON stdout; a failed or unparsable run fails the test.
  static nlohmann::json parse_json_output(const ProcessResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.describe();
      return nlohmann::json();
    }
  }

  // `list --all --json` as root: every lease the broker holds.
  nlohmann::json list_all() const { return parse_json_output(broker_->client_as("root", {"list", "--all", "--json"})); }
  nlohmann::json status_json() const { return parse_json_output(broker_->client_as("root", {"status", "--json"})); }

  std::size_t lease_count() const {
    const auto leases = list_all();
    return leases.is_array() ? leases.size() : static_cast<std::size_t>(-1);
  }

  std::string scratch(const std::string& name) const { return broker_->scratch_dir() + "/" + name; }

  // Waits until a command wrote `path` (and the write is complete: the
  // scripts write a line ending in a newline), returns its content trimmed.
  static std::string wait_for_file(const std::string& path, std::chrono::milliseconds timeout = 30s) {
    std::string content;
    wait_until(
        [&] {
          content = read_file(path);
          return !content.empty() && content.back() == '\n';
        },
        timeout);
    while (!content.empty() && (content.back() == '\n' || content.back() == ' ')) content.pop_back();
    return content;
  }

  std::unique_ptr<BrokerProcess> broker_;
};

// Client arguments for `exec -- sh -c SCRIPT sh ARGS...` (the script sees ARGS
// as $1...).
inline std::vector<std::string> exec_shell(const std::string& script, const std::vector<std::string>& args = {}) {
  std::vector<std::string> argv = {"exec", "--", "sh", "-c", script, "sh"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace xpra_broker::integration
