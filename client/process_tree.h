// Ends every process below the calling process, whatever session or process
// group it moved to. The caller is a subreaper (PR_SET_CHILD_SUBREAPER): what
// double-forks and calls setsid (dbus-launch's dbus-daemon, ssh-agent from
// Xsession) is reparented to it, not to init, so "below us" stays the whole
// tree however it forked, and "no child left" (ECHILD) means nothing of it is
// left.
//
// It only ever signals descendants it finds through the kernel's
// /proc/<pid>/task/<tid>/children lists starting at itself, and it runs as
// the user, so the kernel refuses it any process of another user.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <vector>

namespace xpra_broker::client {

// The live descendants of the calling process (children first), from the
// kernel's children lists. Zombies are included until they are reaped.
std::vector<pid_t> list_own_descendants();

enum class TreeEnd { nothing_left, ended_on_term, killed, gave_up };

struct TreeStop {
  TreeEnd end = TreeEnd::nothing_left;
  std::size_t signalled = 0;  // distinct processes sent SIGTERM or SIGKILL
};

// SIGTERM (and SIGCONT) to every descendant, again to any that appears
// while it waits; SIGKILL to all that are left after `grace` (never, without
// one); returns once the caller has no child left, or 5 s after SIGKILL (a
// process in uninterruptible sleep, or one that became another user's).
// Every exited child is reaped, and `on_reaped(pid, wait_status)` told of
// it, so the caller can keep its command's status.
TreeStop end_process_tree(std::optional<std::chrono::milliseconds> grace,
                          const std::function<void(pid_t, int)>& on_reaped = nullptr);

// Reaps every child that has exited, without blocking, telling `on_reaped`.
void reap_exited(const std::function<void(pid_t, int)>& on_reaped);

}  // namespace xpra_broker::client
