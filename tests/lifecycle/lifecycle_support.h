// Support for the lifecycle suite: a GoogleTest fixture over the integration
// harness (broker_harness.h), and what the tests look at on the host: X
// servers and marked processes from /proc, X lock and socket files, stale
// files planted as another user, timing samples.
//
// Display slices of the suite's range 600-699, one per test, so tests can run
// in parallel without meeting each other:
//   600-619 restart loop     620-629 reaping          630-644 cross-user
//   645-654 quarantine       655-659 back-off         660-669 xpra
//   670-674, 675-679 watchdog (two tests)
//   680-684, 685-689 kill -9 of the holder during start-up (two tests)
//   690-694 reaping of a session that ignores SIGTERM
//   695-699 display conflict after earlier failures (back-off)
//   560-579 containment: every end path with Debian's default Xpra config
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "broker_harness.h"

namespace xpra_broker::lifecycle {

using namespace std::chrono_literals;
using integration::BrokerProcess;
using integration::ChildProcess;
using integration::ProcessResult;
using integration::SpawnOptions;

inline constexpr const char* kAlice = "xpb-alice";
inline constexpr const char* kBob = "xpb-bob";

// ---------------------------------------------------------------- host state

// A process from /proc that has not exited (zombies are left out: an orphan's
// zombie may linger when PID 1 does not reap).
struct HostProcess {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  uid_t uid = 0;  // real uid
  std::string comm;
  std::vector<std::string> argv;
};
std::vector<HostProcess> host_processes();

// The display an X server was started on: its first ":N" argument.
std::optional<std::uint32_t> display_argument(const std::vector<std::string>& argv);

struct XServer {
  pid_t pid = 0;
  std::uint32_t display = 0;
};
// Running X servers (comm Xvfb...) of `uid` on displays first..last.
std::vector<XServer> x_servers_of(uid_t uid, std::uint32_t first, std::uint32_t last);
std::vector<pid_t> pids_of(const std::vector<XServer>& servers);

// Name of the environment variable every process of a test inherits (through
// the client, which passes its environment to the X server and the command),
// so the test can find all that it started.
inline constexpr const char* kMarkVariable = "XPB_LIFECYCLE_MARK";
// Live processes whose environment holds kMarkVariable=mark.
std::vector<HostProcess> marked_processes(const std::string& mark);

bool path_exists(const std::string& path);  // lstat: a dangling symlink exists
std::string x_lock_path(std::uint32_t display);
std::string x_socket_path(std::uint32_t display);
// Is something accepting connections on /tmp/.X11-unix/X<display>?
bool x_socket_listening(std::uint32_t display);

// A pid that no process has now.
pid_t unused_pid();

// This host's name as Xpra puts it in socket names ("<host>-<N>").
std::string host_name();
// What xpra 3.1.3 needs to start headless and quickly: no mDNS, audio, dbus,
// systemd scope, OpenGL probe, HTML server or tray; no --start command.
std::vector<std::string> quick_xpra_options();

// Xpra as a real host runs it: Debian's default config as it is, with
// `dbus-launch` (dbus-x11) and the `start = /etc/X11/Xsession true` command
// on, so a session starts a dbus-daemon and an ssh-agent that leave its
// process group and session. Off: only what reaches outside the host or
// needs hardware (mDNS, the HTML server, printing, webcam, PulseAudio).
std::vector<std::string> host_default_xpra_options();

// Until `xpra list`, run as `user` (with `env`) on the lease's runtime dir,
// shows the lease's display LIVE and `ready_first` (if given) holds, or
// `holder` has ended; at most `timeout`. True only if LIVE with the holder
// running; `listed` keeps the last `xpra list` for a failure message.
bool wait_for_xpra_live(const std::string& user, const v1::Lease& lease, ChildProcess& holder,
                        const std::map<std::string, std::string>& env, ProcessResult& listed,
                        const std::function<bool()>& ready_first = nullptr,
                        std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Boot-time clock ticks now, the clock of /proc/<pid>/stat's starttime.
std::uint64_t boot_ticks_now();
struct UserProcess {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;
};
// Every live (not zombie) process of `uid` that started at or after `since`
// (boot_ticks_now()): what a session of that user left, whatever its name.
std::vector<UserProcess> processes_of_since(uid_t uid, std::uint64_t since);
// "\n  pid N ppid M comm" per process.
std::string describe(const std::vector<UserProcess>& processes);
// The session bus sockets (/tmp/dbus-*, dbus-daemon's with Debian's
// session.conf) of `uid` bound at or after `since` (wall clock): what a
// session's dbus-daemon left in /tmp.
std::vector<std::string> bus_sockets_of_since(uid_t uid, std::time_t since);
std::string describe(const std::vector<std::string>& paths);

// Files planted as another user, as a crashed session of that user leaves
// them; mtime set `age` in the past. Throws if planting fails.
void plant_dead_socket(const std::string& user, const std::string& path, std::chrono::seconds age);
void plant_lock_file(const std::string& user, const std::string& path, pid_t pid, std::chrono::seconds age);

// Runs `body` in a forked child that became `user` (groups, gid, uid); the
// child's output is what `body` returns. The caller must be single-threaded
// (checked), so `body` may allocate and use the protocol library.
std::string run_in_child_as(const std::string& user, const std::function<std::string()>& body);

// ---------------------------------------------------------------- timings

struct TimingSamples {
  std::string name;
  std::vector<double> ms;
  void add(std::chrono::steady_clock::duration d);
  double median() const;
  double max() const;
  // One line, e.g. "reap after kill -9 of the client: n=10 median 120.0 ms max 300.2 ms".
  std::string summary() const;
};

// Prints a measurement so that it shows in the test output and the ctest log.
void report(const std::string& line);

// ---------------------------------------------------------------- fixture

class LifecycleTest : public ::testing::Test {
 protected:
  LifecycleTest();

  BrokerProcess& start_broker(std::vector<std::string> options);
  BrokerProcess& broker() { return *broker_; }

  // xpra-request-display ARGS as `user`, marked; `env` is added.
  ChildProcess spawn_client(const std::string& user, const std::vector<std::string>& args,
                            std::map<std::string, std::string> env = {}, bool own_process_group = false);
  ProcessResult run_client(const std::string& user, const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = 90s, std::map<std::string, std::string> env = {});
  // `exec` as `user` (with `exec_options` before the command) of a command
  // that, the first time, waits until `race(display)` has put something on
  // its display (a race with a server outside the broker) and then fails with
  // the X server's conflict message; later attempts print "ran on :N".
  ProcessResult run_client_racing(const std::string& user, const std::vector<std::string>& exec_options,
                                  const std::function<void(std::uint32_t display)>& race,
                                  std::chrono::milliseconds timeout = 90s);
  // Any command as `user`, marked.
  ChildProcess spawn_marked(const std::string& user, const std::vector<std::string>& argv);
  // Xvfb on `display` as `user`, outside the broker; waits until it listens.
  ChildProcess start_xvfb_outside(const std::string& user, std::uint32_t display);

  // Every lease the broker holds (raw protocol, as root).
  std::vector<v1::Lease> leases();
  // The lease the client `holder` holds, once the broker lists it; nullopt
  // when the client ended first or `timeout` passed.
  std::optional<v1::Lease> lease_held_by(ChildProcess& holder, std::chrono::milliseconds timeout = 60s);
  v1::StatusReply raw_status();
  // Parses stdout of a client run with --json; a failed run fails the test.
  static nlohmann::json parse_json(const ProcessResult& r);

  // Removed at TearDown if still there.
  void remove_at_end(const std::string& path) { planted_.push_back(path); }
  std::string scratch(const std::string& name) const { return broker_->scratch_dir() + "/" + name; }
  const std::string& mark() const { return mark_; }

  void TearDown() override;

  std::unique_ptr<BrokerProcess> broker_;
  std::string mark_;
  std::vector<std::string> planted_;
};

}  // namespace xpra_broker::lifecycle
