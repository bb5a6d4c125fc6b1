// Support for the durable-lease suite: a GoogleTest fixture over the
// integration harness (broker_harness.h) that can kill -9 its broker and
// start it again on the same runtime dir and socket, raw protocol
// connections as a test user, and what the tests look at on the host (X
// servers, processes).
//
// Display slices of the suite's range 700-799, one per test, so tests can run
// in parallel without meeting each other:
//   700-759 kill -9 under load      760-769 exec clients keep their displays
//   770-774 holder died meanwhile   775-779 grace expiry
//   780-784 one broker per dir      785-789 takeover refused
//   790-791 full disk: a lease end  792-793 full disk: a process report
//   794-799 full disk: fill/free loop under load
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "broker_harness.h"

namespace xpra_broker::durable {

using namespace std::chrono_literals;
using integration::BrokerProcess;
using integration::ChildProcess;
using integration::ProcessResult;

inline constexpr const char* kAlice = "xpb-alice";
inline constexpr const char* kBob = "xpb-bob";

// Takes another identity for the calling thread only (supplementary groups
// from the group database, gid, uid). The raw syscalls are on purpose:
// glibc's wrappers change every thread of the process. A connection made
// afterwards carries this identity (SO_PEERCRED is taken at connect()).
bool become_user_on_this_thread(const std::string& user);

// A raw protocol connection as `user`, made on a short-lived thread that
// took the user's identity; the connection keeps it whichever thread uses it.
BrokerConnection connect_as(const std::string& user, const std::string& socket,
                            std::chrono::milliseconds timeout = 5s);

// One request on `conn`; the transport error, if any, is an ADD_FAILURE.
v1::Response call_or_fail(BrokerConnection& conn, const v1::Request& request);

v1::Request acquire_request(const std::string& purpose);
v1::Request release_request(const std::string& lease_id);
v1::Request reattach_request(const std::string& lease_id, const std::string& token);
v1::Request list_all_request();

// Xvfb processes running (not zombies) on a display in [first, last].
struct XServer {
  pid_t pid = 0;
  uid_t uid = 0;
  std::uint32_t display = 0;
};
std::vector<XServer> x_servers_on(std::uint32_t first, std::uint32_t last);
std::optional<XServer> x_server_on(std::uint32_t display);

class DurableTest : public ::testing::Test {
 protected:
  // A broker on a fresh temporary runtime dir with `options`.
  BrokerProcess& start_broker(std::vector<std::string> options);
  // The same, with the runtime dir (and so the journal) on a tmpfs of
  // `size` bytes that the test mounts, so it can fill it to the brim.
  BrokerProcess& start_broker_on_small_tmpfs(std::vector<std::string> options, std::size_t size);
  // Fills that tmpfs until a write fails with ENOSPC, or frees it again.
  void fill_runtime_dir();
  void free_runtime_dir();
  // kill -9, then waits until it is gone and reaped. The socket file, the
  // lock file and the journal stay behind, as after a crash.
  void kill_broker();
  // Starts it again on the same runtime dir and socket; waits until it answers.
  void restart_broker();
  BrokerProcess& broker() { return *broker_; }

  // Every lease, through a raw root connection.
  std::vector<v1::Lease> list_all();
  std::optional<v1::Lease> find_lease(const std::string& id);
  // `list --all --json` as root, through the real client.
  nlohmann::json list_all_json();

  // A directory for the broker's --x11-tmp-dir, so tests without X servers
  // never look at the host's /tmp displays.
  std::string private_x11_dir();

  // Processes the test caused to run outside any client it owns (an exec
  // client's X server and session, orphaned by a kill -9): SIGKILLed at the
  // end of the test if still running, so a failing test leaves none behind.
  void kill_at_teardown(const std::vector<pid_t>& pids) { orphans_.insert(orphans_.end(), pids.begin(), pids.end()); }

  void TearDown() override;

  std::unique_ptr<BrokerProcess> broker_;
  std::string earlier_logs_;  // the logs of the broker's earlier lives
  // When set, a failing test prints only the log lines that contain one of
  // these (plus warnings and errors): a long test's full log is too much.
  std::vector<std::string> log_filter_;

 private:
  std::unique_ptr<integration::TempDir> x11_dir_;
  std::string tmpfs_;  // mounted at the runtime dir, unmounted at teardown
  std::vector<pid_t> orphans_;
};

}  // namespace xpra_broker::durable
