// Support for the adversarial suite (issue "Hostile local users"): the
// lifecycle suite's fixture (a broker, commands as users, host state from
// /proc) plus what a hostile user does that the other suites never do:
// speak the raw protocol as a real user while the test interleaves other
// steps, hold many connections, flood, fork thousands of processes, and
// start xpra-brokerd by hand to see it refuse.
//
// Display slices, one per test (see ../CMakeLists.txt):
//   on the real /tmp (X servers or lock files in /tmp matter):
//     800-809 cross-user kill, bob     810-814 cross-user kill, root
//     820-829 forged live locks
//   with a private --x11-tmp-dir (nothing in /tmp; the numbers only have to
//   stay clear of other suites' abstract @xpra/N sockets):
//     50000-51999 status with thousands of blocked numbers
//     52000-52099 quarantine flooding      52100-52109 control characters
//     52200-52209 log/connection flooding  52300-52309 stall under read spam
//     52400-52409 idle connections         52500-52509 own files, root start
//     52600-52609 a reported process that became root
//     52700-52709 one fake X server        52710-52719 the shared connection count
//     52720-52729 a filled runtime dir     52730-52739 abstract-socket squatting
//     52740-52749 /tmp churn               52750-52759 a PAM login, full connection pool
//     52760-52769 the journal's reserve on a full disk
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lifecycle_support.h"

namespace xpra_broker::adversarial {

using namespace std::chrono_literals;
using integration::ChildProcess;
using integration::ProcessResult;
using lifecycle::kAlice;
using lifecycle::kBob;
inline constexpr const char* kMallory = "xpb-mallory";  // not in allowed-groups (xpb-users)
inline constexpr const char* kAllowedGroup = "xpb-users";

// ---------------------------------------------------------------- raw clients

// A raw protocol client running as `user` in a forked child, driven by the
// test one request at a time, so a test can interleave "alice acquires",
// "the test plants a file", "alice reports" with real identities (the
// broker reads them from SO_PEERCRED). The child holds `connections`
// connections to the broker; they (and any lease on them) last until the
// agent is destroyed or reconnect() is called. Create agents while the test
// process is single-threaded.
class UserAgent {
 public:
  UserAgent(const std::string& user, const std::string& socket_path, int connections = 1);
  ~UserAgent();
  UserAgent(const UserAgent&) = delete;
  UserAgent& operator=(const UserAgent&) = delete;

  struct Result {
    bool transport_ok = false;  // false: connect/send/receive failed; `error` says how
    v1::Response response;
    std::string error;
    // "OK", "INVALID", ... or "TRANSPORT(<error>)", for messages.
    std::string status_name() const;
  };
  Result call(const v1::Request& request, int connection = 0, std::chrono::milliseconds timeout = 30s);
  // Sends `body` as one frame, valid Request or not (non-UTF-8 strings).
  Result call_raw(const std::string& body, int connection = 0, std::chrono::milliseconds timeout = 30s);
  // Closes connection `connection` and opens it again; false if connecting failed.
  bool reconnect(int connection = 0);
  pid_t pid() const { return pid_; }

 private:
  Result exchange(char op, int connection, const std::string& body, std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

// Request builders.
v1::Request acquire_request(const std::string& purpose);
v1::Request release_request(const std::string& lease_id);
v1::Request status_request();
v1::Request list_request(bool all);
v1::Request start_failure_request(const std::string& lease_id, v1::StartFailure failure, const std::string& detail);
v1::Request reattach_request(const std::string& lease_id, const std::string& token);

// `body` with a frame header in front.
std::string frame_of(const std::string& body);

// `request` serialized, with the string field value `placeholder` replaced
// by `bytes` (same length) in the encoding: a request with strings that are
// not UTF-8, which libprotobuf's serializer would refuse to make itself.
std::string serialized_with_bytes(const v1::Request& request, const std::string& placeholder, const std::string& bytes);

// ---------------------------------------------------------------- background work as a user

// `body` runs in a forked child that became `user` and setsid()'d, with
// every fd above 2 closed; it gets a small shared counter block to report
// progress through. The child is SIGKILLed (with its process group) and
// reaped on destruction or stop(). Create while single-threaded.
class BackgroundAs {
 public:
  static constexpr int kCounters = 8;
  using Counters = std::atomic<std::uint64_t>[kCounters];
  BackgroundAs(const std::string& user, const std::function<int(Counters&)>& body);
  ~BackgroundAs();
  BackgroundAs(const BackgroundAs&) = delete;
  BackgroundAs& operator=(const BackgroundAs&) = delete;

  std::uint64_t counter(int i) const { return (*counters_)[i].load(); }
  // The test may write counters too, e.g. a flag that tells the body to stop.
  void set_counter(int i, std::uint64_t value) { (*counters_)[i].store(value); }
  pid_t pid() const { return pid_; }
  // Waits up to `timeout` for the child to exit by itself; its exit code, or
  // nullopt if it still runs.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  // SIGTERM (the body may catch it to clean up), up to `grace`, then SIGKILL
  // of its process group; reaps it.
  void stop(std::chrono::milliseconds grace = 10s);

 private:
  pid_t pid_ = -1;
  Counters* counters_ = nullptr;
  bool reaped_ = false;
};

// `count` processes of `user` that only wait (forks, not execs: cheap), as
// extra load on /proc. Ended (SIGKILL) and reaped by their parent on
// destruction, so no zombie is left to a PID 1 that may not reap.
class IdleProcesses {
 public:
  IdleProcesses(const std::string& user, int count);
  int started() const { return static_cast<int>(runner_->counter(0)); }
  bool failed() const { return runner_->counter(1) != 0; }

 private:
  std::unique_ptr<BackgroundAs> runner_;
};

// ---------------------------------------------------------------- files and logs

// A socket file bound (no listener) at `path` and handed to `user`, as that
// user's crashed X server leaves it.
void plant_dead_socket_owned_by(const std::string& user, const std::string& path);

// The broker log's lines from byte `from` on.
std::vector<std::string> log_lines_from(const std::string& log, std::size_t from);
std::size_t count_containing(const std::vector<std::string>& lines, const std::string& needle);

// Why `bytes` is not clean terminal text: the first raw control byte (other
// than \n and \t), DEL, byte that is not part of valid UTF-8, or bidi or
// zero-width format character, with its offset and line; empty if clean. Also: a line beginning with `marker`
// (text injected as a line of its own).
std::string unclean_text(const std::string& bytes, const std::string& marker = "");

// ---------------------------------------------------------------- brokerd by hand

// xpra-brokerd started directly (not through BrokerProcess), to see it
// refuse to start or to look at its credentials: `args` are complete but for
// --config (an empty file) and stdout/stderr (captured).
struct BrokerdRun {
  bool served = false;   // it answered a status request on `socket`
  int exit_code = -1;    // when it exited by itself before serving
  pid_t pid = -1;
  std::string output;    // stdout + stderr so far
  // Read while it served: /proc/<pid>/status "Uid:" and "Gid:" lines.
  std::string uid_line;
  std::string gid_line;
  v1::StatusReply status;  // its answer when it served
  std::string describe() const;
};
// Starts it, waits until it serves or exits (up to `timeout`); if it serves,
// reads its credentials and status, then stops it (SIGTERM).
BrokerdRun run_brokerd(const std::vector<std::string>& args, const std::string& socket,
                       std::chrono::milliseconds timeout = 30s);

// ---------------------------------------------------------------- fixture

class AdversarialTest : public lifecycle::LifecycleTest {
 protected:
  // A private directory for --x11-tmp-dir (with .X11-unix, mode 1777).
  std::string private_x11_dir();
  // As the lifecycle suite's, but a failure shows only the head and tail of
  // the broker log: a flooded log has a hundred thousand lines.
  void TearDown() override;

  std::unique_ptr<integration::TempDir> x11_dir_;
  std::unique_ptr<integration::BrokerProcess> finished_broker_;
};

// The first and last `n` lines of `text`, each cut at 300 bytes.
std::string head_and_tail(const std::string& text, std::size_t n);

// A one-line summary of latencies, e.g. "n=100 p50 1.2 ms p99 3.4 ms max 5.0 ms".
std::string latency_summary(std::vector<double> ms);

}  // namespace xpra_broker::adversarial
