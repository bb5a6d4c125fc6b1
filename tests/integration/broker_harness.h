// Integration harness: runs the real xpra-brokerd on a private temporary
// runtime dir and socket, and runs commands as real users (the test users of
// tests/support/create-test-users.sh). Needs root, like CI.
//
// Nothing here uses GoogleTest, so other suites (pam, system, bench) can
// reuse it; failures to set up throw std::runtime_error with a message that
// says what went wrong (GoogleTest reports an escaping exception as a
// failure of the test).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "broker_connection.h"
#include "protocol.h"

namespace xpra_broker::integration {

using namespace std::chrono_literals;

// Paths of the binaries under test, set by CMake ($<TARGET_FILE:...>).
const std::string& brokerd_path();
const std::string& request_display_path();

// A directory from mkdtemp(), removed with everything in it on destruction.
class TempDir {
 public:
  // `mode` is applied after creation (mkdtemp makes 0700).
  explicit TempDir(const std::string& prefix = "xpb-integ", mode_t mode = 0755);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Creates `path` as a directory with exactly `mode` (not masked by umask).
void make_directory(const std::string& path, mode_t mode);

struct UserAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, as initgroups() would set them
  std::string home;
};
// Looks the user up in the passwd and group databases; throws if missing.
UserAccount user_account(const std::string& name);
uid_t uid_of(const std::string& name);
gid_t gid_of_group(const std::string& name);

// How a finished process ended, shell style: exit status, or 128+signal.
struct ProcessResult {
  int exit_code = -1;
  bool timed_out = false;  // it was killed because it did not end in time
  std::string out;
  std::string err;
  std::string describe() const;  // exit code plus both outputs, for failure messages
};

struct SpawnOptions {
  // Added to (or replacing) the inherited environment. XPRA_BROKER_* variables
  // of the test's own environment are never inherited.
  std::map<std::string, std::string> env;
  std::string cwd = "/";
  // In a process group of its own (as a supervisor's child is), so that a
  // test can kill the whole group without killing itself.
  bool own_process_group = false;
};

// A process started by spawn_as(); move-only. The destructor ends it if it is
// still running (SIGTERM, then SIGKILL) and reaps it, so no test leaks one.
// stdout and stderr go to memory files, read when the process has ended.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid, int out_fd, int err_fd) : pid_(pid), out_fd_(out_fd), err_fd_(err_fd) {}
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running();  // reaps it if it has ended
  void send_signal(int signo) const;

  // Waits for the end; on timeout kills it (SIGKILL) and says so in the result.
  ProcessResult wait(std::chrono::milliseconds timeout = 60s);
  // Waits for the end without killing it; nullopt if it still runs.
  std::optional<ProcessResult> wait_for(std::chrono::milliseconds timeout);
  // SIGTERM, up to `grace` for it to end, then SIGKILL.
  ProcessResult terminate(std::chrono::milliseconds grace = 5s);

 private:
  ProcessResult collect(int wait_status, bool timed_out);
  void close_fds();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::optional<ProcessResult> result_;
};

// Starts argv[0] (looked up on PATH) as `user`: supplementary groups from the
// group database, then gid, then uid (all of real, effective and saved), so a
// user other than root keeps no capability. stdin is /dev/null; the working
// directory is options.cwd.
ChildProcess spawn_as(const std::string& user, const std::vector<std::string>& argv, const SpawnOptions& options = {});
ProcessResult run_as(const std::string& user, const std::vector<std::string>& argv, const SpawnOptions& options = {},
                     std::chrono::milliseconds timeout = 60s);

// Runs `body` in a forked child that has become `user`; returns its exit
// code (the value `body` returns). `body` runs after fork() in a possibly
// multi-threaded process: it must use only async-signal-safe calls (open,
// write, socket, bind, ...), no allocation.
int run_function_as(const std::string& user, const std::function<int()>& body);

// Is a process with this pid running? A zombie is not: an orphan's zombie
// may linger when PID 1 does not reap (containers).
bool process_running(pid_t pid);

// Polls `condition` every `interval` until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s,
                std::chrono::milliseconds interval = 20ms);

std::string read_file(const std::string& path);

// xpra-brokerd on a fresh temporary runtime dir, socket and empty config
// file, logging to a file.
//
// By default the broker is started the way the systemd unit runs it: as root
// with --user=xpra-broker --group=xpra, so it drops to the service user and
// keeps only CAP_CHOWN, CAP_FOWNER and CAP_KILL. Pass --user=/--group= in
// `options` to change that.
class BrokerProcess {
 public:
  // options: "--KEY=VALUE" strings, e.g. "--displays=200-209". --socket,
  // --runtime-dir and --config are set by the harness.
  explicit BrokerProcess(std::vector<std::string> options);
  ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  // Starts the broker and waits until it answers a status request. Throws
  // std::runtime_error (with the broker's log) if it does not come up.
  void start(std::chrono::milliseconds timeout = 20s);
  // SIGTERM, then SIGKILL after `grace`. Returns the exit code (128+signal if
  // killed), or -1 if it was not running.
  int stop(std::chrono::milliseconds grace = 5s);

  bool alive();
  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  // A directory every user may write in (mode 0777), for commands' output.
  const std::string& scratch_dir() const { return scratch_dir_; }
  const std::string& log_path() const { return log_path_; }
  std::string log() const;
  // The broker process's effective gid (from /proc), the group of the
  // per-user directories.
  gid_t effective_gid() const;

  // xpra-request-display --socket <this broker's socket> ARGS...
  std::vector<std::string> client_command(const std::vector<std::string>& args) const;
  ProcessResult client_as(const std::string& user, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = 60s) const;
  ChildProcess spawn_client_as(const std::string& user, const std::vector<std::string>& args,
                               const SpawnOptions& options = {}) const;

  // A raw protocol connection from this (root) process.
  BrokerConnection connect(std::chrono::milliseconds timeout = 5s) const;
  // One request on a fresh root connection; throws if the transport fails.
  v1::Response call(const v1::Request& request) const;

 private:
  std::vector<std::string> options_;
  TempDir dir_;
  std::string runtime_dir_;
  std::string socket_path_;
  std::string scratch_dir_;
  std::string config_path_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace xpra_broker::integration
