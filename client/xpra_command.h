// `exec --xpra`: the client completes an `xpra start` (or `start-desktop`)
// command itself, so a supervisor's command line needs no {display} or
// {runtime_dir} placeholder (jupyter-server-proxy runs its command through
// str.format, where braces mean something else):
//
//   xpra start [ARGS]  ->  xpra start :N --socket-dir=DIR --daemon=no [ARGS]
//
// :N only when the command names no display, --socket-dir only when it has
// none, --daemon=no only when it does not say so already. A daemonizing
// xpra (--daemon, --daemon=yes) is refused: its server would leave the
// process group the lease reaps, i.e. escape the lease.
//
// Pure: checked before a lease is taken (a usage error costs no lease),
// completed once the display and directory are known.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xpra_broker::client {

// Where the command stands, as check_xpra_command() read it.
struct XpraCommandShape {
  std::size_t subcommand = 0;  // index of "start" / "start-desktop"
  bool has_display = false;    // an argument ":{display}" after the subcommand
  bool has_socket_dir = false;
  bool has_no_daemon = false;  // --daemon=no (or false/0/off) or --no-daemon
};

struct XpraCommandCheck {
  XpraCommandShape shape;
  std::string error;  // empty: the command is usable with --xpra
  std::string hint;   // what to write instead, when there is an error
};

XpraCommandCheck check_xpra_command(const std::vector<std::string>& command);

// The command to run on `display` with `runtime_dir`: placeholders replaced
// as without --xpra, then the missing arguments inserted right after the
// subcommand. `shape` must come from check_xpra_command(command).
std::vector<std::string> complete_xpra_command(const std::vector<std::string>& command, const XpraCommandShape& shape,
                                               std::uint32_t display, const std::string& runtime_dir);

}  // namespace xpra_broker::client
