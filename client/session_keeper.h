// The keeper: a small process of the user's that sits between the client and
// the command, so that nothing started under a lease outlives it, however the
// lease ends.
//
//   supervisor ── xpra-request-display ── keeper ── command (xpra start ...)
//                 (its process group)     (own group,  ├─ Xvfb, Xsession, ...
//                                          subreaper)  └─ dbus-daemon, ssh-agent
//                                                         (setsid'd, reparented here)
//
// Why a process of its own: a helper that double-forks and calls setsid
// (dbus-launch's dbus-daemon, Xsession's ssh-agent) leaves the command's
// process group and session, and its parent exits; the kernel reparents it to
// the nearest subreaper. The client used to be that subreaper, but a client
// killed with SIGKILL (a supervisor's start timeout) hands its orphans to init,
// where nothing ties them to the lease any more. The keeper is in a process
// group of its own, so a SIGKILL of the client or of the client's whole group
// does not reach it, and it holds the tree until it is gone:
//
// - when the command exits, it ends what is left of the tree (SIGTERM, grace,
//   SIGKILL; process_tree.h);
// - when the client is gone (its lifeline closed: exit, crash, SIGKILL), it
//   stops the command as the client would on SIGTERM, then ends the rest;
// - when it is signalled (the broker's reaper on release, logout or an
//   expired reattach grace), it passes SIGTERM on to the whole tree at once,
//   and leaves SIGKILL to the reaper, after the admin's reap-grace-ms;
// and only then reports the command's wait status to the client and exits.
//
// The client reports the keeper to the broker (role KEEPER) before the
// command may run; the broker's reaper selects everything that descends from
// a reported process, so the orphans the keeper holds are also what the
// broker ends on its own end paths (release, PAM logout, reattach grace).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>

#include "unique_fd.h"

namespace xpra_broker::client {

struct KeeperOptions {
  // Between SIGTERM and SIGKILL when the tree is ended.
  std::chrono::milliseconds grace{5000};
  // When the client is gone: SIGTERM to the command alone (xpra, which then
  // stops its X server and removes its sockets) rather than to its group.
  bool stop_command_alone = false;
};

// The client's hold on a running keeper.
struct Keeper {
  pid_t pid = -1;
  pid_t command = -1;  // the keeper's child; leads its own process group
  // Readable once the tree is gone: the command's wait status (an int); EOF
  // without it if the keeper itself died.
  UniqueFd report;
  // Held by the client only: its closing tells the keeper the client is gone.
  UniqueFd lifeline;
};

// Forks the keeper, which forks the command and runs `become_command` in it
// (which must exec or _exit). Every descriptor the keeper inherited besides
// stdin, stdout and stderr is closed in the keeper after the command is
// forked, so the keeper holds none of the command's pipes. nullopt (errno
// set) if the keeper or the command could not be forked.
std::optional<Keeper> start_keeper(const KeeperOptions& options, const std::function<void()>& become_command);

// Reads the keeper's report; the command's wait status, or nullopt if the
// keeper died without one. Blocks until the report or EOF.
std::optional<int> read_keeper_report(const Keeper& keeper);

}  // namespace xpra_broker::client
