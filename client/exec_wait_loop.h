// The loop of `exec` while its command runs: one poll() over the signals
// sent to the client, the keeper's report, the broker's connection and the
// stderr of the command and of its X server. It relays stop requests to the
// command, relays both stderrs, and keeps the lease conversation's link up
// (reattaching after a broker restart), until the keeper reports that the
// command's tree is gone.
#pragma once

#include <optional>

#include "command_process.h"
#include "lease_conversation.h"
#include "unique_fd.h"

namespace xpra_broker::client {

struct CommandWait {
  // The command's wait status; nothing if the keeper died without reporting
  // or poll() failed.
  std::optional<int> status;
  // A stop signal (SIGTERM, SIGINT, SIGHUP) reached us and was passed on:
  // the session was stopped, it did not fail.
  bool stop_requested = false;
};

// `signal_fd`: a signalfd for SIGTERM, SIGINT, SIGHUP and SIGCHLD (the last
// only wakes the loop, to reap). `x_stderr`: the X server's stderr, or
// empty; reset when it closes. `stop_command_alone`: a stop signal goes to
// the command only (xpra), not to its process group.
CommandWait wait_for_command(int signal_fd, CommandProcess& command, LeaseConversation& lease, UniqueFd& x_stderr,
                             bool stop_command_alone);

}  // namespace xpra_broker::client
