// Starts an X server on a leased display the way Xpra does (-displayfd), and
// tells whether it came up: ready, timed out, or exited, with its own error
// lines. A server that is not ready in time is killed, never abandoned
// (Xpra issue 4250: 1800 leaked X servers in 6 hours).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "unique_fd.h"

namespace xpra_broker::client {

inline constexpr const char* kDefaultXServerCommand = "Xvfb -nolisten tcp -noreset";

enum class XStart { ready, timeout, exited, spawn_failed };

struct XServerResult {
  XStart outcome = XStart::spawn_failed;
  pid_t pid = 0;             // the X server (its own process group leader)
  std::string error_lines;   // what it printed on stderr during start-up
  bool display_conflict = false;
  // When ready: the X server's stderr, which the caller must keep draining
  // (closing it would kill the server with SIGPIPE on its next message).
  UniqueFd stderr_fd;
};

// Runs `/bin/sh -c 'exec COMMAND :N -displayfd 3'` in a new process group
// and waits up to `timeout` for the display number on fd 3. On timeout or
// exit the group is killed before returning.
// `on_started` runs right after the fork, before waiting: the caller reports
// the pid to the broker at once, so even an X server that never gets ready
// is reaped if this client dies while waiting.
XServerResult start_x_server(const std::string& command, std::uint32_t display, std::chrono::milliseconds timeout,
                             const std::function<void(pid_t)>& on_started = {});

// XPRA_DISPLAY_FD_TIMEOUT (seconds, default 20), as Xpra reads it.
std::chrono::milliseconds display_fd_timeout();

// Does this X server's (or xpra's) output mean "the display number is taken"?
bool is_display_conflict(const std::string& text);

}  // namespace xpra_broker::client
