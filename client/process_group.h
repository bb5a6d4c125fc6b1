// Ends a process group this client started (the command, the X server):
// SIGTERM, a grace period, SIGKILL for what is left, reaping as it waits
// because a zombie still counts as a member of its group. It never signals
// a pgid <= 0 (that would be our own group) and, with Reap::leader_only,
// never waits for a child the caller did not hand over.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>

namespace xpra_broker::client {

// Which exited children a stop collects while it waits.
enum class Reap {
  // The leader only (the caller may have other children it waits for
  // itself). After SIGKILL: blocks until the leader is reaped.
  leader_only,
  // Every exited child: a subreaper inherits the group's orphans, and
  // their zombies would keep the group alive. After SIGKILL: waits up to
  // 5 s until nothing of the group is left.
  every_child,
};

// The last signal the group needed.
enum class GroupEnd { already_gone, ended_on_term, killed };

struct GroupStop {
  GroupEnd end = GroupEnd::already_gone;
  std::optional<int> leader_status;  // the leader's wait status, when this stop reaped it
};

// SIGTERM (and SIGCONT) to what is left of group `pgid`, SIGKILL after
// `grace` if anything still is. Sends nothing to a group already gone.
GroupStop stop_process_group(pid_t pgid, std::chrono::milliseconds grace, Reap reap);

// Reaps every child that has exited, without blocking; the wait status of
// `leader` when it was among them.
std::optional<int> reap_exited_children(pid_t leader);

}  // namespace xpra_broker::client
