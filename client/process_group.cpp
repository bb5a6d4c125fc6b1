#include "process_group.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace xpra_broker::client {

namespace {

using Clock = std::chrono::steady_clock;

constexpr useconds_t kPollInterval = 20000;  // 20 ms
// SIGKILL cannot be resisted: this only bounds the wait for the last zombies.
constexpr int kPollsAfterKill = 250;  // 5 s

// EPERM: a member is there, only not ours to signal (it changed its uid).
bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

// Collects the exited children `mode` allows while the stop waits, keeping
// the leader's status for the caller.
class GroupReaper {
 public:
  GroupReaper(pid_t pgid, Reap mode) : pgid_(pgid), mode_(mode) {}

  void reap_exited() {
    if (mode_ == Reap::every_child) {
      if (auto status = reap_exited_children(pgid_)) leader_status_ = status;
      return;
    }
    int status = 0;
    if (!leader_status_ && ::waitpid(pgid_, &status, WNOHANG) == pgid_) leader_status_ = status;
  }

  // True once the group is gone, false if it outlived `deadline`.
  bool wait_until_gone(Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      reap_exited();
      if (!group_alive(pgid_)) return true;
      ::usleep(kPollInterval);
    }
    return false;
  }

  void collect_killed() {
    // Only the leader is ours to wait for; it cannot survive SIGKILL.
    if (mode_ == Reap::leader_only) {
      int status = 0;
      if (!leader_status_ && ::waitpid(pgid_, &status, 0) == pgid_) leader_status_ = status;
      return;
    }
    for (int i = 0; i < kPollsAfterKill && group_alive(pgid_); ++i) {
      reap_exited();
      ::usleep(kPollInterval);
    }
    reap_exited();
  }

  std::optional<int> leader_status() const { return leader_status_; }

 private:
  pid_t pgid_;
  Reap mode_;
  std::optional<int> leader_status_;
};

}  // namespace

std::optional<int> reap_exited_children(pid_t leader) {
  std::optional<int> leader_status;
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return leader_status;
    if (pid == leader) leader_status = status;
  }
}

GroupStop stop_process_group(pid_t pgid, std::chrono::milliseconds grace, Reap reap) {
  if (pgid <= 0) return {};
  GroupReaper reaper(pgid, reap);
  reaper.reap_exited();
  if (!group_alive(pgid)) return {GroupEnd::already_gone, reaper.leader_status()};
  ::kill(-pgid, SIGTERM);
  ::kill(-pgid, SIGCONT);  // a stopped process cannot act on SIGTERM
  if (reaper.wait_until_gone(Clock::now() + grace)) return {GroupEnd::ended_on_term, reaper.leader_status()};
  ::kill(-pgid, SIGKILL);
  reaper.collect_killed();
  return {GroupEnd::killed, reaper.leader_status()};
}

}  // namespace xpra_broker::client
