// Real child processes for the unit tests of the lifecycle code (reaper,
// report_process, X server launcher). Every process a test starts is owned by
// a ScopedChild, so a failing assertion never leaves one behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "host/process_inspector.h"
#include "test_support.h"

namespace xpra_broker::testing {

// A child of the test: SIGKILLed (with its process group, when it leads one)
// and reaped when the object goes.
class ScopedChild {
 public:
  ScopedChild() = default;
  ScopedChild(pid_t pid, bool leads_group) : pid_(pid), leads_group_(leads_group) {}
  ScopedChild(ScopedChild&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)), leads_group_(o.leads_group_), reaped_(o.reaped_) {}
  ScopedChild& operator=(ScopedChild&& o) noexcept {
    if (this != &o) {
      reset();
      pid_ = std::exchange(o.pid_, -1);
      leads_group_ = o.leads_group_;
      reaped_ = o.reaped_;
    }
    return *this;
  }
  ScopedChild(const ScopedChild&) = delete;
  ScopedChild& operator=(const ScopedChild&) = delete;
  ~ScopedChild() { reset(); }

  pid_t pid() const { return pid_; }
  explicit operator bool() const { return pid_ > 0; }

  // Waits for the child (which must be dead or dying); its exit status.
  int reap() {
    if (pid_ <= 0 || reaped_) return status_;
    while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status_;
  }

  void reset() {
    if (pid_ <= 0) return;
    if (!reaped_) {
      // A broker call may have lowered CAP_KILL, needed for a child that
      // switched to another uid.
      if (::geteuid() == 0) restore_effective_capabilities();
      // Until the leader is reaped its pid cannot name anybody else's group.
      if (leads_group_) ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      reap();
    }
    pid_ = -1;
    reaped_ = false;
  }

 private:
  pid_t pid_ = -1;
  bool leads_group_ = false;
  bool reaped_ = false;
  int status_ = 0;
};

struct SleeperOptions {
  bool own_group = false;      // setpgid(0, 0)
  std::optional<uid_t> uid;    // setresuid() to it (needs root)
  std::optional<pid_t> group;  // join this process group instead

  SleeperOptions& leading_own_group() {
    own_group = true;
    return *this;
  }
  SleeperOptions& as_uid(uid_t u) {
    uid = u;
    return *this;
  }
  SleeperOptions& in_group(pid_t pgid) {
    group = pgid;
    return *this;
  }
};

// Forks a child that sleeps until killed. Returns once the child is set up
// (group, uid), or an empty ScopedChild if that failed. The child calls only
// async-signal-safe functions.
inline ScopedChild spawn_sleeper(SleeperOptions options = {}) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(ready[0]);
    ::close(ready[1]);
    return {};
  }
  if (pid == 0) {
    ::close(ready[0]);
    bool ok = true;
    if (options.own_group) ok = ok && ::setpgid(0, 0) == 0;
    if (options.group) ok = ok && ::setpgid(0, *options.group) == 0;
    if (options.uid) ok = ok && ::setresuid(*options.uid, *options.uid, *options.uid) == 0;
    const char byte = ok ? 'R' : 'E';
    (void)!::write(ready[1], &byte, 1);
    ::close(ready[1]);
    if (!ok) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ssize_t got;
  while ((got = ::read(ready[0], &byte, 1)) < 0 && errno == EINTR) {
  }
  ::close(ready[0]);
  ScopedChild child(pid, options.own_group);
  if (got != 1 || byte != 'R') return {};
  return child;
}

// Forks `/bin/sh -c script` as the leader of a new process group.
inline ScopedChild spawn_shell_group(const std::string& script) {
  const pid_t pid = ::fork();
  if (pid < 0) return {};
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so it holds before the parent relies on it
  return ScopedChild(pid, true);
}

// Polls `condition` every 10 ms, up to `tries` times. Bounds a wait for
// something that must happen; never measures how long it took.
inline bool eventually(const std::function<bool()>& condition, int tries = 1000) {
  for (int i = 0; i < tries; ++i) {
    if (condition()) return true;
    ::usleep(10000);
  }
  return condition();
}

// Processes of the group that have not exited (zombies do not count).
inline std::vector<ProcessInfo> running_members_of_group(pid_t pgid) {
  std::vector<ProcessInfo> out;
  for (auto& p : list_processes())
    if (p.pgid == pgid && p.state != 'Z' && p.state != 'X') out.push_back(std::move(p));
  return out;
}

// A pid that was ours a moment ago and is gone now (pids are handed out in
// increasing order, so it is not reused within a test).
inline pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  while (pid > 0 && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return pid;
}

}  // namespace xpra_broker::testing
