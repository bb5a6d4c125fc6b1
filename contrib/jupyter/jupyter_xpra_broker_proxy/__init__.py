"""An Xpra desktop for jupyter-server-proxy, on a display from xpra-broker.

A drop-in for jupyter-xprahtml5-proxy (FZJ-JSC, the TCP version before
2024): the same `xpra start` with the same options, the same password and
AES key files, the same 90 s start timeout and the same launcher entry, but
run through `xpra-request-display exec --xpra`, so the broker chooses the
display and the socket directory and ends everything the session started
when it ends (see docs/jupyterhub.md).

Why the command looks the way it does:

- jupyter-server-proxy renders every string of `command` and `environment`
  with `str.format(port=..., base_url=..., unix_socket=...)`
  (jupyter_server_proxy/handlers.py, `_render_template`). A literal `{` or
  `}` anywhere else raises KeyError or ValueError, so the command names no
  display and no runtime dir (`--xpra` inserts `:N`, `--socket-dir` and
  `--daemon=no`), and every literal part is escaped (`{{`) before it goes
  into the command.
- Xpra's unix sockets go only to the broker's directory (`--socket-dir`
  from `--xpra`, `--socket-dirs=$XPRA_BROKER_RUNTIME_DIR` here), where the
  broker removes them when the lease ends.
- No password, no key, nothing secret in any URL: Xpra listens on a Unix
  socket (jupyter-server-proxy's `unix_socket`, >= 4.0) in a private 0700
  directory of the user, with `--auth=peercred:uid=<the user's uid>` (the
  kernel's SO_PEERCRED: only the user's own uid gets in; without `uid=` the
  module lets in every uid), and on no TCP port. The HTML5 client is
  opened at `xprahtml5/` with no query string; upstream put the password and
  the AES key in that URL, which the hub's proxy, the hub and the Jupyter
  server log (a start timeout logged the whole URL). Xpra 3.1 serves its
  HTML5 client and websocket on Unix sockets as on TCP (server_core.py,
  `may_wrap_socket` for "unix-domain" when html is on).
- jupyter-server-proxy 4.1.2 opens the websocket over that socket with
  `websocket_connect(..., resolver=)`, which tornado has only from 6.3;
  Debian 12 has 6.2. `tornado_compat.enable()` (called here) gives tornado
  6.2's WebSocketClientConnection that parameter; it changes nothing on
  tornado >= 6.3.
- Xpra starts `start` (xterm) and none of the host's own start commands:
  the environment appends this package's `xdg` directory to
  XDG_CONFIG_DIRS, whose xpra/xpra.conf empties `start` and `start-child`
  after /etc/xpra has set them (Debian's `start = /etc/X11/Xsession true`
  shows an xmessage, then starts `ssh-agent x-terminal-emulator`, whose agent
  outlives the session by up to 10 s; Xpra 3.1 has no command-line option
  that removes configured start commands). `host_start=True` keeps them.
- The private directory is made once per call of `setup_xpra()`, that is
  once per start of the user's Jupyter server; it is Xpra's XDG_RUNTIME_DIR
  and holds its socket, and it is removed when the server exits.

Use it from the single-user server's config file (the package needs no
installation; see jupyter_server_config.py next to it):

    from jupyter_xpra_broker_proxy import setup_xpra
    c.ServerProxy.servers = {"xprahtml5": setup_xpra()}

Environment, read when `setup_xpra()` runs:

- XPRA_BROKER_REQUEST_DISPLAY: the client (default: `xpra-request-display`
  on PATH, else /usr/bin/xpra-request-display);
- XPRA_BIN: the xpra executable (upstream's variable; default `xpra` on
  PATH);
- XPRA_BROKER_SOCKET is not read here: the proxy passes the server's
  environment to the client, which reads it.
"""

import atexit
import os
import shutil
import tempfile

from . import tornado_compat


# `xpra-request-display exec` exits with the command's (Xpra's) own status,
# or with one of these for its own failures (README, xpra-request-display(1)):
# they never collide with sysexits codes a command may use itself.
EXEC_OWN_FAILURES = {
    118: "bad usage of xpra-request-display",
    119: "the broker rejected the request as malformed",
    120: "the broker is unreachable (is xpra-brokerd.socket running?)",
    121: "the broker failed (its log says why)",
    122: "the command could not be started (fork, pipe)",
    123: "the X server did not start",
    124: "refused for now: quota, no free display, rate limit or back-off; retried later",
    125: "permission denied by the broker (allowed-groups)",
    126: "the command is not executable",
    127: "the command was not found",
}


def describe_exec_status(status):
    """What an exit status of `xpra-request-display exec` means, in words."""
    if status in EXEC_OWN_FAILURES:
        return "xpra-request-display: " + EXEC_OWN_FAILURES[status]
    if status is not None and status > 128:
        return "the session was killed by signal %d" % (status - 128)
    return "the session exited with status %s" % status


__all__ = ["setup_xpra", "xpra_start_options", "xpra_config_dirs", "describe_exec_status", "EXEC_OWN_FAILURES",
           "SERVER_NAME"]

SERVER_NAME = "xprahtml5"

# Upstream's options after `xpra start` that do not depend on the call, in
# upstream's order (the display and the socket dir are the broker's).
_UPSTREAM_TRAILING_FLAGS = (
    "--clipboard-direction=both",
    "--no-mdns",
    "--no-bell",
    "--no-speaker",
    "--no-printing",
    "--no-microphone",
    "--no-notifications",
    "--no-systemd-run",
    "--sharing",
    "--no-daemon",
)


def _literal(text):
    """`text` as it must appear in a template so that str.format gives it back."""
    return str(text).replace("{", "{{").replace("}", "}}")


# XDG config dir whose xpra/xpra.conf empties the host's start commands.
XDG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xdg")


def xpra_config_dirs(current):
    """XDG_CONFIG_DIRS for the drop-in's Xpra: `current` (the XDG default,
    /etc/xdg, when unset or empty) with XDG_DIR last, where Xpra reads it
    after /etc/xpra and the other XDG dirs. Only Xpra looks for an xpra/
    subdirectory there; the session's other programs find nothing of theirs.
    A `current` that already ends with it is returned as it is."""
    dirs = [d for d in (current or "/etc/xdg").split(":") if d]
    if ":" in XDG_DIR:  # cannot be listed; Xpra then keeps the host's start commands
        return ":".join(dirs)
    if not dirs or dirs[-1] != XDG_DIR:
        dirs.append(XDG_DIR)
    return ":".join(dirs)


def _program(variable, name, fallback):
    configured = os.environ.get(variable)
    if configured:
        return configured
    return shutil.which(name) or fallback


def xpra_start_options(start="xterm -fa Monospace"):
    """Upstream's `xpra start` options, unrendered: `{unix_socket}` is still a template field."""
    return [
        "--html=on",
        # The proxy's socket, in the private dir; no TCP socket at all.
        "--bind={unix_socket}",
        # A --bind on the command line replaces the config's `bind = auto`;
        # keep that one too: the session's socket in the broker's directory
        # (--socket-dir), where `xpra info :N` and `xpra list` find it.
        "--bind=auto",
        # Only processes of the user's own uid (the kernel says who connects).
        # Without uid=, Xpra's peercred module (3.1 to 6.x) lets in any uid.
        "--auth=peercred:uid=%d" % os.getuid(),
        "--start=" + _literal(start),
    ] + list(_UPSTREAM_TRAILING_FLAGS) + [
        # Xpra makes a socket in every one of its socket-dirs (Debian's config
        # adds ~/.xpra, /run/user/$UID/xpra, /run/xpra). A session killed
        # before its cleanup leaves them behind, and the next start on that
        # display waits for them (XPRA_WAIT_PROBE_TIMEOUT, 6 s). Only the
        # broker's directory, which the broker cleans when the lease ends:
        # `exec --xpra` puts it in the environment and Xpra expands $VARS.
        "--socket-dirs=$XPRA_BROKER_RUNTIME_DIR",
    ]


def setup_xpra(start="xterm -fa Monospace", extra_xpra_args=(), timeout=90,
               purpose="jupyter-server-proxy " + SERVER_NAME, host_start=False):
    """The jupyter-server-proxy configuration of the Xpra desktop.

    Each call makes a new private directory for Xpra's socket. `extra_xpra_args`
    are appended to `xpra start` as they are (escaped for the proxy's
    str.format like everything else); a `--start=...` there runs too. Xpra
    runs `start` (empty: nothing) and not the start commands of the host's
    Xpra config, unless `host_start` is true.
    """
    tornado_compat.enable()
    private_dir = tempfile.mkdtemp(prefix="xpra_broker_%d_" % os.getuid())  # mode 0700
    atexit.register(shutil.rmtree, private_dir, True)

    client = _program("XPRA_BROKER_REQUEST_DISPLAY", "xpra-request-display", "/usr/bin/xpra-request-display")
    xpra = _program("XPRA_BIN", "xpra", "/usr/bin/xpra")
    # --end-with-parent: a notebook server killed by SIGKILL (the OOM killer)
    # cannot stop its proxied processes; the client then ends Xpra and
    # releases the display itself.
    command = [_literal(client), "exec", "--xpra", "--purpose", _literal(purpose), "--end-with-parent", "--",
               _literal(xpra), "start"]
    command += xpra_start_options(start)
    command += [_literal(a) for a in extra_xpra_args]

    def mappath(path):  # jupyter-server-proxy passes the argument by this name
        # The HTML5 client's page; it finds everything else (the websocket
        # too) relative to its own location, and needs no parameter.
        return "/index.html" if path == "/" else path

    environment = {"XDG_RUNTIME_DIR": _literal(private_dir)}
    if not host_start:
        environment["XDG_CONFIG_DIRS"] = _literal(xpra_config_dirs(os.environ.get("XDG_CONFIG_DIRS")))

    return {
        "command": command,
        "environment": environment,
        # A path, not True: jupyter-server-proxy's own (True) is a mkdtemp
        # under /tmp that it never removes.
        "unix_socket": os.path.join(private_dir, "xpra.sock"),
        "timeout": timeout,
        "mappath": mappath,
        "absolute_url": False,
        "new_browser_tab": True,
        "launcher_entry": {
            "enabled": True,
            "title": "Xpra Desktop",
            "path_info": SERVER_NAME + "/",
        },
    }
