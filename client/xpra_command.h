// `exec --xpra`: the client completes an `xpra start` (or `start-desktop`)
// command itself, so a supervisor's command line needs no {display} or
// {runtime_dir} placeholder (jupyter-server-proxy runs its command through
// str.format, where braces mean something else):
//
//   xpra start [ARGS]  ->  xpra start :N --socket-dir=DIR --daemon=no [ARGS]
//   (Xpra 5 and later also:  --sessions-dir=DIR --use-display=no --systemd-run=no)
//
// :N only when the command names no display, --socket-dir only when it has
// none, --daemon=no only when it does not say so already. Xpra 5 and 6 keep
// a session dir ($XDG_RUNTIME_DIR/xpra/N, falling back to /tmp/xpra/N or
// /tmp/N: shared state another user can squat) and take over any X server
// already on :N (use-display=auto): --sessions-dir puts the session dir in
// the lease's runtime dir and --use-display=no makes a taken display a
// conflict, not a takeover; --systemd-run=no keeps the server in the
// lease's process tree where a user manager runs (RHEL's systemd-run=auto
// would re-run it in a transient user scope; docs/xpra-versions.md). 3.1 has neither option
// and would refuse them, so the version is read first (xpra_version()). A daemonizing
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
  bool has_sessions_dir = false;
  bool has_use_display = false;  // any --use-display[=...]: the user chose
  bool has_systemd_run = false;  // any --systemd-run[=...]
};

struct XpraCommandCheck {
  XpraCommandShape shape;
  std::string error;  // empty: the command is usable with --xpra
  std::string hint;   // what to write instead, when there is an error
};

XpraCommandCheck check_xpra_command(const std::vector<std::string>& command);

// The command to run on `display` with `runtime_dir`: placeholders replaced
// as without --xpra, then the missing arguments inserted right after the
// subcommand. `shape` must come from check_xpra_command(command);
// `xpra_major` from xpra_version() (0: unknown, treated as 3.1: nothing a
// 3.1 would refuse).
std::vector<std::string> complete_xpra_command(const std::vector<std::string>& command, const XpraCommandShape& shape,
                                               std::uint32_t display, const std::string& runtime_dir,
                                               int xpra_major = 0);

// The major version of the Xpra `program` (argv[0] of the command) would
// run, 0 when it cannot be told. Cheap first: the `__version__` line of the
// xpra/__init__.py Python would import (PYTHONPATH, then Debian's
// dist-packages when the script runs /usr/bin/python3), so a Debian 3.1.3
// start pays no second interpreter; only an unknown layout (a venv, another
// Python) runs `program --version` once (bounded by a timeout).
int xpra_version(const std::string& program);

// "__version__ = \"5.0.8\"" (a line of xpra/__init__.py) or "xpra v6.5.3"
// (--version's output) -> 5, 6; 0 when no version is in `text`.
int xpra_major_of(const std::string& text);

// Environment --xpra adds for every version: Xpra 6 binds an abstract
// socket @xpra/N, one namespace for all users, and a squatter there makes
// the start fail after its X server started; XPRA_AUTO_ABSTRACT_SOCKET=0
// (xpra/net/constants.py) turns it off, and older versions ignore it.
inline constexpr const char* kXpraNoAbstractSocketEnv = "XPRA_AUTO_ABSTRACT_SOCKET";

// And XPRA_WAIT_PROBE_TIMEOUT=0 (xpra/net/socket_util.py, 3.1 to 6.x): a
// session that did not end cleanly (kill -9, a crash) leaves its socket
// `<host>-N` in the user's own socket dirs (~/.xpra, /run/user/UID/xpra).
// The next Xpra on N finds it refusing connections ("unknown state") and
// waits WAIT_PROBE_TIMEOUT, 6 s, in case a server is starting there, before
// it removes it. Under a lease nothing else can be starting on N (the
// broker handed N to this lease alone and checked it free), so the wait
// only delays every later start on that number by 6 s. Xpra still probes
// the socket once and refuses to start if a server answers.
inline constexpr const char* kXpraWaitProbeTimeoutEnv = "XPRA_WAIT_PROBE_TIMEOUT";

}  // namespace xpra_broker::client
