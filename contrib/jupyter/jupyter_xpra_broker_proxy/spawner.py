"""JupyterHub starts each user's Xpra desktop itself, through xpra-broker.

Deployment 2 of docs/jupyterhub.md: no notebook server and no
jupyter-server-proxy; the hub's LocalProcessSpawner runs

    xpra-request-display exec --xpra --purpose "jupyterhub xpra desktop" -- \
        xpra start --html=<web root> --bind-tcp=127.0.0.1:<port> --tcp-auth=pam:service=<svc> ...

as the user, and the hub's proxy sends /user/<name>/ to Xpra's port.

- The hub's proxy passes the path unchanged and Xpra 3.1's HTML server has
  no URL prefix, so Xpra serves a web root in which user/<name>/ (the
  server's base URL) links to Xpra's own www directory. The HTML5 client
  takes its websocket path from the page's location, so it connects back
  through the same route.
- Nothing between the hub's proxy and Xpra checks the hub's login: Xpra
  asks for the user's password itself (PAM, `pam_service`; by default the
  PAMAuthenticator's service). Give it a service with auth and account lines
  only: Xpra runs the service's session close as the user, which
  pam_xpra_broker.so would send to the broker (refused, and logged). The
  password travels inside the hub's HTTPS and then over localhost.
- Xpra runs `start_command` and not the host's own start commands (Debian's
  `/etc/X11/Xsession true`): XDG_CONFIG_DIRS gets the package's `xdg`
  directory last, as with `setup_xpra()`; `host_start = True` keeps them.

- Another Xpra than the host's (a 5.x/6.x build in its own prefix): set
  `xpra` to its bin/xpra and put its PYTHONPATH and XPRA_SYSTEM_CONF_DIRS
  into c.Spawner.environment (docs/jupyterhub.md); `exec --xpra` tells the
  version from that PYTHONPATH.

Configure it in jupyterhub_config.py:

    import sys; sys.path.insert(0, "/usr/share/xpra-broker/jupyter")
    from jupyter_xpra_broker_proxy.spawner import XpraDesktopSpawner
    c.JupyterHub.spawner_class = XpraDesktopSpawner
"""

import os
import shutil
import tempfile

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, List, Unicode

from . import _UPSTREAM_TRAILING_FLAGS, _program, describe_exec_status, xpra_config_dirs

XPRA_WWW = "/usr/share/xpra/www"


class XpraDesktopSpawner(LocalProcessSpawner):
    pam_service = Unicode(
        "",
        config=True,
        help="PAM service Xpra checks the user's password with; empty: PAMAuthenticator.service, else 'login'.",
    )
    start_command = Unicode("xterm -fa Monospace", config=True, help="Xpra's --start (upstream's default).")
    host_start = Bool(
        False, config=True,
        help="Also run the start commands of the host's Xpra config (Debian: /etc/X11/Xsession true).")
    extra_xpra_args = List(Unicode(), config=True, help="Appended to `xpra start`.")
    request_display = Unicode(
        "", config=True, help="The client; empty: $XPRA_BROKER_REQUEST_DISPLAY, else xpra-request-display on PATH."
    )
    xpra = Unicode(
        "", config=True,
        help="The xpra executable the user runs; empty: $XPRA_BIN of the hub, else xpra on the hub's PATH, else "
             "/usr/bin/xpra. A private build (another Xpra version) also needs its PYTHONPATH and "
             "XPRA_SYSTEM_CONF_DIRS in c.Spawner.environment (docs/jupyterhub.md).")

    _web_root = None

    def _service(self):
        if self.pam_service:
            return self.pam_service
        return getattr(self.authenticator, "service", "") or "login"

    def _make_web_root(self):
        # mkdtemp: a name no other user can have planted (root writes here).
        root = tempfile.mkdtemp(prefix="xpra-desktop-www-")
        os.chmod(root, 0o755)
        prefix = [part for part in self.server.base_url.split("/") if part]
        parent = os.path.join(root, *prefix[:-1])
        os.makedirs(parent, mode=0o755, exist_ok=True)
        os.symlink(XPRA_WWW, os.path.join(parent, prefix[-1]))
        return root

    def _remove_web_root(self):
        if self._web_root and os.path.basename(self._web_root).startswith("xpra-desktop-www-"):
            shutil.rmtree(self._web_root, ignore_errors=True)
        self._web_root = None

    async def start(self):
        self._remove_web_root()
        self._web_root = self._make_web_root()
        client = self.request_display or _program("XPRA_BROKER_REQUEST_DISPLAY", "xpra-request-display",
                                                  "/usr/bin/xpra-request-display")
        xpra = self.xpra or _program("XPRA_BIN", "xpra", "/usr/bin/xpra")
        self.cmd = [client, "exec", "--xpra", "--purpose", "jupyterhub xpra desktop", "--", xpra, "start",
                    "--html=" + self._web_root,
                    "--start=" + self.start_command,
                    # "pam:service=", not "pam,service=": 5.x and 6.x take the
                    # module name up to the first ":" when the option has no ":"
                    # before its "," (auth_helper.get_auth_module), i.e. a module
                    # "pam,service=..." they cannot load; 3.1 reads both.
                    "--tcp-auth=pam:service=" + self._service()] + [
                   flag for flag in _UPSTREAM_TRAILING_FLAGS] + [
                   # All of Xpra's sockets in the broker's directory (see the package's docstring).
                   "--socket-dirs=$XPRA_BROKER_RUNTIME_DIR"] + list(self.extra_xpra_args)
        return await super().start()

    def get_env(self):
        env = super().get_env()
        if not self.host_start:
            env["XDG_CONFIG_DIRS"] = xpra_config_dirs(env.get("XDG_CONFIG_DIRS"))
        return env

    def get_args(self):
        # LocalProcessSpawner.start() appends these after self.port is chosen.
        return ["--bind-tcp=127.0.0.1:%d" % self.port] + list(self.args)

    def get_state(self):
        state = super().get_state()
        if self._web_root:
            state["xpra_web_root"] = self._web_root
        return state

    def load_state(self, state):
        super().load_state(state)
        self._web_root = state.get("xpra_web_root", self._web_root)

    async def poll(self):
        # The hub logs only "exited with status N": say which of exec's own
        # failures N is (a broker that refuses for now is not Xpra failing).
        status = await super().poll()
        if status is not None and status != getattr(self, "_xpra_status_told", None):
            self._xpra_status_told = status
            self.log.warning("%s's Xpra desktop ended: %s", self.user.name, describe_exec_status(status))
        return status

    async def stop(self, now=False):
        await super().stop(now=now)
        self._remove_web_root()

    def clear_state(self):
        # The hub calls stop() only while poll() says Xpra runs (User.stop);
        # an Xpra that ended by itself (a failed start, a crash, `xpra stop`)
        # gets only this, after which the web root would be nobody's.
        super().clear_state()
        self._remove_web_root()
