// What the benchmark programs that run xpra-brokerd share, so that each one
// need not carry its own copy: starting the broker (or any program) as a
// child with its output in a log file, owning that child until it is stopped
// and reaped, asking a broker for its status, reading /proc figures, and
// small parsing helpers. Kept to what the benchmarks do alike; what differs
// between them (their loops, their options, their output) stays in each.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "broker_connection.h"

namespace xpra_broker::bench {

// The whole of a small file (/proc entries, a broker's log); empty if it
// cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A number that is all of `text`, or nothing.
inline std::optional<double> parse_number(const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The broker's arguments as a benchmark prints them: each after a space,
// without the run's own paths (--config, --socket, --runtime-dir,
// --x11-tmp-dir), which say nothing about what was measured.
inline std::string shown_broker_args(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args)
    if (a.rfind("--config=", 0) && a.rfind("--socket=", 0) && a.rfind("--runtime-dir=", 0) &&
        a.rfind("--x11-tmp-dir=", 0))
      text += " " + a;
  return text;
}

// A child we started; stopped and reaped when it goes out of scope.
class ChildProcess {
 public:
  ChildProcess() = default;
  // grace: how long stop() lets the child end after SIGTERM before SIGKILL.
  explicit ChildProcess(pid_t pid, std::chrono::milliseconds grace = std::chrono::seconds(2))
      : pid_(pid), grace_(grace) {}
  ChildProcess(ChildProcess&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), grace_(other.grace_) {}
  ChildProcess& operator=(ChildProcess&& other) noexcept {
    if (this != &other) {
      stop();
      pid_ = std::exchange(other.pid_, -1);
      grace_ = other.grace_;
    }
    return *this;
  }
  ~ChildProcess() { stop(); }

  pid_t pid() const { return pid_; }
  // Whether it has ended (it is reaped then); true if there is no child.
  bool exited() {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  // SIGKILL, and reaped.
  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM, then SIGKILL if it has not gone within the grace.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto give_up = std::chrono::steady_clock::now() + grace_;
    while (!exited() && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kill_now();
  }

 private:
  pid_t pid_ = -1;
  std::chrono::milliseconds grace_ = std::chrono::seconds(2);
};

struct SpawnOptions {
  // Sent to the child when this process dies (PR_SET_PDEATHSIG).
  int death_signal = SIGKILL;
  // A process group of its own, with stdin from /dev/null: a ^C on the
  // terminal reaches only the benchmark, which then stops the child itself.
  bool own_process_group = false;
  // If the exec fails, say why in the log.
  bool log_exec_failure = false;
};

// Forks and execs `path` with `args`, its stdout and stderr to `log_path`
// (truncated). Call only while this process has no other threads. Returns
// the child's pid; throws if it cannot fork.
inline pid_t spawn_logged(const std::string& path, const std::vector<std::string>& args,
                          const std::string& log_path, const SpawnOptions& options = {}) {
  std::vector<char*> argv{const_cast<char*>(path.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, options.death_signal);
    if (::getppid() != parent) ::_exit(127);
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (options.own_process_group) {
      const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null >= 0) ::dup2(null, STDIN_FILENO);
    }
    if (log >= 0) {
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    if (options.own_process_group) ::setpgid(0, 0);
    ::execv(path.c_str(), argv.data());
    if (options.log_exec_failure) {
      const std::string why = "cannot execute " + path + ": " + std::strerror(errno) + "\n";
      if (::write(STDERR_FILENO, why.data(), why.size()) < 0) {
      }
    }
    ::_exit(127);
  }
  return pid;
}

// One status request on a new connection (as root: never paced); the reply
// if the broker answered it with OK.
inline std::optional<v1::Response> status_reply(const std::string& socket, std::chrono::milliseconds call_timeout) {
  auto conn = BrokerConnection::connect(socket, std::chrono::milliseconds(1000));
  if (!conn.connected()) return std::nullopt;
  conn.set_timeout(call_timeout);
  v1::Request request;
  request.mutable_status();
  v1::Response response;
  if (conn.call(request, response) != BrokerConnection::Error::none || response.status() != v1::OK)
    return std::nullopt;
  return response;
}

// CPU time a process has run and has waited runnable for a CPU, summed over
// its threads (/proc/<pid>/task/*/schedstat, nanoseconds).
struct SchedTime {
  std::uint64_t run_ns = 0;
  std::uint64_t wait_ns = 0;
};
inline SchedTime sched_time_of(pid_t pid) {
  SchedTime total;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (!dir) return total;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::istringstream in(read_file(tasks + "/" + e->d_name + "/schedstat"));
    std::uint64_t run = 0, wait = 0;
    if (in >> run >> wait) {
      total.run_ns += run;
      total.wait_ns += wait;
    }
  }
  ::closedir(dir);
  return total;
}

}  // namespace xpra_broker::bench
