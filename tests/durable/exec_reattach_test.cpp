// Live `xpra-request-display exec --xvfb -- sleep 60` clients across a kill -9
// and restart of the broker: they reattach by themselves and keep their
// displays and X servers; and the session of a holder that died while the
// broker was down is reaped once the broker is back.
#include <signal.h>
#include <sys/stat.h>

#include <map>
#include <set>

#include "durable_support.h"

namespace xpra_broker::durable {
namespace {

std::string range(std::uint32_t first, std::uint32_t last) {
  return "--displays=" + std::to_string(first) + "-" + std::to_string(last);
}

class ExecReattachTest : public DurableTest {
 protected:
  // Waits until `count` leases are listed, each active with its X server and
  // session reported; returns them.
  std::vector<v1::Lease> wait_for_sessions(std::size_t count) {
    std::vector<v1::Lease> leases;
    const bool ready = integration::wait_until(
        [&] {
          leases = list_all();
          if (leases.size() != count) return false;
          for (const auto& l : leases)
            if (l.state() != v1::ACTIVE || l.process_pids_size() != 3 || !x_server_on(l.display())) return false;
          return true;
        },
        40s, 50ms);
    EXPECT_TRUE(ready) << "the exec clients did not get their sessions running";
    return leases;
  }

  // The X server's files in /tmp: its socket, and its lock file (which Xvfb
  // started with -displayfd does not always write).
  static bool x11_socket_exists(std::uint32_t display) {
    struct stat st {};
    return ::lstat(("/tmp/.X11-unix/X" + std::to_string(display)).c_str(), &st) == 0;
  }
  static bool lock_file_exists(std::uint32_t display) {
    struct stat st {};
    return ::lstat(("/tmp/.X" + std::to_string(display) + "-lock").c_str(), &st) == 0;
  }
};

TEST_F(ExecReattachTest, ExecClientsKeepTheirDisplaysAndXServersAcrossABrokerKillAndRestart) {
  start_broker({range(760, 769), "--reattach-grace-seconds=60"});
  std::map<std::string, ChildProcess> clients;
  for (const char* user : {kAlice, kBob})
    clients.emplace(user, broker().spawn_client_as(user, {"exec", "--xvfb", "--", "sleep", "60"}));
  const auto before = wait_for_sessions(2);
  ASSERT_EQ(before.size(), 2u);
  std::map<std::string, pid_t> x_pid;  // lease id -> its X server
  for (const auto& l : before) {
    x_pid[l.id()] = x_server_on(l.display())->pid;
    kill_at_teardown({x_pid[l.id()]});
    kill_at_teardown({l.process_pids().begin(), l.process_pids().end()});
  }

  kill_broker();
  ASSERT_FALSE(HasFatalFailure());
  for (auto& [user, client] : clients) EXPECT_TRUE(client.running()) << user << "'s exec client ended with the broker";
  restart_broker();

  // They reattach by themselves (back-off of at most 2 s between tries).
  std::map<std::string, nlohmann::json> after;
  const bool back = integration::wait_until(
      [&] {
        after.clear();
        for (const auto& l : list_all_json()) after[l.at("lease").get<std::string>()] = l;
        if (after.size() != before.size()) return false;
        for (const auto& l : before)
          if (!after.count(l.id()) || after[l.id()].at("state") != "active") return false;
        return true;
      },
      30s, 100ms);
  ASSERT_TRUE(back) << "the exec clients did not reattach; `list --all --json` shows:\n"
                    << nlohmann::json(after).dump(2);
  for (const auto& l : before) {
    SCOPED_TRACE("lease " + l.id() + " of " + l.user());
    const auto& now = after[l.id()];
    EXPECT_EQ(now.at("display").get<std::uint32_t>(), l.display()) << "same display";
    EXPECT_EQ(now.at("uid").get<std::uint32_t>(), l.uid());
    EXPECT_EQ(now.at("pid").get<int>(), clients.at(l.user()).pid()) << "the exec client holds it again";
    EXPECT_EQ(now.at("processes").size(), 3u) << "its X server, keeper and session are still tracked";
    const auto x = x_server_on(l.display());
    ASSERT_TRUE(x) << "the X server of :" << l.display() << " is gone";
    EXPECT_EQ(x->pid, x_pid[l.id()]) << "the very X server that ran before the kill";
  }
  for (auto& [user, client] : clients) EXPECT_TRUE(client.running()) << user;

  // The reattached leases are ordinary ones again: ending the clients ends
  // them, X servers included.
  for (auto& [user, client] : clients) {
    const auto result = client.terminate(30s);
    EXPECT_FALSE(result.timed_out) << result.describe();
    EXPECT_NE(result.err.find("reattached to lease"), std::string::npos) << result.describe();
  }
  EXPECT_TRUE(integration::wait_until([&] { return list_all().empty(); }, 20s));
  EXPECT_TRUE(integration::wait_until([&] { return x_servers_on(760, 769).empty(); }, 20s));
}

TEST_F(ExecReattachTest, TheSessionOfAHolderThatDiedWhileTheBrokerWasDownIsReapedAfterTheRestart) {
  start_broker({range(770, 774), "--reattach-grace-seconds=120", "--reap-grace-ms=1000"});
  auto client = broker().spawn_client_as(kAlice, {"exec", "--xvfb", "--", "sleep", "60"});
  const auto leases = wait_for_sessions(1);
  ASSERT_EQ(leases.size(), 1u);
  const v1::Lease lease = leases.front();
  const pid_t x = x_server_on(lease.display())->pid;
  const std::vector<pid_t> tracked(lease.process_pids().begin(), lease.process_pids().end());
  kill_at_teardown(tracked);
  kill_at_teardown({x});

  kill_broker();
  ASSERT_FALSE(HasFatalFailure());
  client.send_signal(SIGKILL);
  const auto result = client.wait(20s);  // reaped: its pid is not running any more
  EXPECT_EQ(result.exit_code, 128 + SIGKILL);
  // Its X server outlives it (nobody ends it yet: it is the client's child,
  // and the broker is down). The command is ended by its keeper, which
  // outlives the client for that: nothing of the session's own tree waits
  // for the broker.
  ASSERT_TRUE(integration::process_running(x));
  ASSERT_TRUE(x11_socket_exists(lease.display()));
  for (pid_t pid : tracked) {
    if (pid == x) continue;
    EXPECT_TRUE(integration::wait_until([&] { return !integration::process_running(pid); }, 15s))
        << "pid " << pid << " (keeper or command) outlived the holder";
  }

  restart_broker();
  // Reaped at once, not after the 120 s grace: its holder is gone.
  EXPECT_TRUE(integration::wait_until([&] { return !x_server_on(lease.display()); }, 15s))
      << "the X server of the dead holder still runs on :" << lease.display();
  for (pid_t pid : tracked)
    EXPECT_TRUE(integration::wait_until([&] { return !integration::process_running(pid); }, 15s)) << pid;
  EXPECT_TRUE(integration::wait_until([&] { return !find_lease(lease.id()); }, 15s)) << "the lease still exists";
  EXPECT_TRUE(integration::wait_until(
      [&] { return !x11_socket_exists(lease.display()) && !lock_file_exists(lease.display()); }, 15s))
      << "the X socket or lock file of :" << lease.display() << " was left behind";
  EXPECT_NE(broker().log().find("holder gone while the broker was down"), std::string::npos);

  // The display is handed out again.
  auto conn = connect_as(kBob, broker().socket_path());
  std::set<std::uint32_t> got;
  for (int i = 0; i < 5; ++i) {
    const auto r = call_or_fail(conn, acquire_request("after"));
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    got.insert(r.acquire().lease().display());
  }
  EXPECT_TRUE(got.count(lease.display()));
}

}  // namespace
}  // namespace xpra_broker::durable
