// Leak watchdog: the broker counts X servers per user on the whole host,
// leases or not. Above xserver-warn-per-user its log names the user and the
// pids; `status` lists every user's X servers for root, only her own for a
// user.
//
// The counts are host-wide and other suites run X servers as the same test
// users at the same time, so the checks are "contains ours", never "equals".
#include <algorithm>
#include <regex>

#include "lifecycle_support.h"

namespace xpra_broker::lifecycle {
namespace {

bool contains_all(const std::vector<pid_t>& haystack, const std::vector<pid_t>& needles) {
  return std::all_of(needles.begin(), needles.end(),
                     [&](pid_t p) { return std::find(haystack.begin(), haystack.end(), p) != haystack.end(); });
}

class LeakWatchdogTest : public LifecycleTest {
 protected:
  // Three X servers of alice and one of bob, none of them leased, started
  // before the broker so that its start-up check sees them.
  // Displays first..first+3; the broker gets first..first+4.
  void start_x_servers(std::uint32_t first) {
    for (std::uint32_t d = first; d <= first + 4; ++d)
      ASSERT_FALSE(path_exists(x_lock_path(d)) || path_exists(x_socket_path(d))) << ":" << d << " in use before";
    for (std::uint32_t d = first; d < first + 3; ++d) {
      alice_x_.push_back(start_xvfb_outside(kAlice, d));
      alice_pids_.push_back(alice_x_.back().pid());
    }
    bob_x_ = start_xvfb_outside(kBob, first + 3);
  }

  std::vector<ChildProcess> alice_x_;
  std::vector<pid_t> alice_pids_;
  ChildProcess bob_x_;
};

TEST_F(LeakWatchdogTest, WarnsNamingUserAndPidsAndStatusListsXServersPerUser) {
  ASSERT_NO_FATAL_FAILURE(start_x_servers(670));
  const uid_t alice = integration::uid_of(kAlice);
  const uid_t bob = integration::uid_of(kBob);
  start_broker({"--displays=670-674", "--xserver-warn-per-user=2"});

  // The start-up check: a warning naming alice and her pids.
  const std::regex warning("uid=" + std::to_string(alice) + "\\(" + kAlice +
                           "\\) runs [0-9]+ X servers \\(threshold 2\\), [0-9]+ under broker leases: pids ([0-9,]+)");
  std::smatch m;
  std::string log;
  ASSERT_TRUE(integration::wait_until(
      [&] {
        log = broker().log();
        return std::regex_search(log, m, warning);
      },
      30s))
      << "no watchdog warning for alice in the log:\n"
      << log;
  std::vector<pid_t> warned;
  {
    const std::string list = m[1];
    std::size_t start = 0;
    while (start < list.size()) {
      const auto comma = list.find(',', start);
      warned.push_back(static_cast<pid_t>(std::stol(list.substr(start, comma - start))));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  EXPECT_TRUE(contains_all(warned, alice_pids_)) << m[0];

  // status as root: everyone's X servers, per user.
  std::vector<pid_t> alice_listed, bob_listed;
  const auto status = raw_status();
  for (const auto& x : status.x_servers()) {
    if (x.uid() == alice) {
      EXPECT_EQ(x.user(), kAlice);
      EXPECT_EQ(x.leases(), 0u);
      alice_listed.assign(x.pids().begin(), x.pids().end());
    }
    if (x.uid() == bob) bob_listed.assign(x.pids().begin(), x.pids().end());
  }
  EXPECT_TRUE(contains_all(alice_listed, alice_pids_));
  EXPECT_TRUE(contains_all(bob_listed, {bob_x_.pid()}));

  // status as alice: only her own.
  const std::string socket = broker().socket_path();
  const std::string seen = run_in_child_as(kAlice, [&]() -> std::string {
    auto conn = BrokerConnection::connect(socket, 10s);
    v1::Request request;
    request.mutable_status();
    v1::Response response;
    if (conn.call(request, response) != BrokerConnection::Error::none || response.status() != v1::OK)
      return "status failed";
    std::string out;
    for (const auto& x : response.status_reply().x_servers()) {
      out += "uid " + std::to_string(x.uid()) + ":";
      for (pid_t p : x.pids()) out += " " + std::to_string(p);
      out += "\n";
    }
    return out;
  });
  EXPECT_NE(seen.find("uid " + std::to_string(alice) + ":"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("uid " + std::to_string(bob) + ":"), std::string::npos) << "alice sees bob's X servers:\n"
                                                                             << seen;
  for (pid_t p : alice_pids_) EXPECT_NE(seen.find(" " + std::to_string(p)), std::string::npos) << seen;

  // The census only reports: nobody's X server outside the broker is killed.
  for (auto& x : alice_x_) EXPECT_TRUE(x.running());
  EXPECT_TRUE(bob_x_.running());
}

// What an admin runs: `xpra-request-display status --json`. The X servers per
// user must be in it (docs/lifecycle.md: "`status` shows them").
TEST_F(LeakWatchdogTest, StatusJsonListsXServersPerUser) {
  ASSERT_NO_FATAL_FAILURE(start_x_servers(675));
  const uid_t alice = integration::uid_of(kAlice);
  start_broker({"--displays=675-679", "--xserver-warn-per-user=2"});
  const auto json = parse_json(broker().client_as("root", {"status", "--json"}));
  ASSERT_TRUE(json.contains("x_servers")) << "status --json has no x_servers:\n" << json.dump(2);
  std::vector<pid_t> listed;
  for (const auto& x : json["x_servers"])
    if (x.value("uid", 0u) == alice) {
      EXPECT_EQ(x.value("user", ""), kAlice);
      for (const auto& p : x["pids"]) listed.push_back(p.get<pid_t>());
    }
  EXPECT_TRUE(contains_all(listed, alice_pids_)) << json.dump(2);
}

}  // namespace
}  // namespace xpra_broker::lifecycle
