#!/usr/bin/python3
"""One desktop through the JupyterHub drop-in per Xpra version users run
(issue 25): Debian 12's 3.1.3 and the private 5.0.8 and 6.5.3 builds that
scripts/build-xpra-versions.sh makes (the ctest fixture xpra_versions_build,
its manifest in XPB_XPRA_VERSIONS_MANIFEST).

    test_xpra_version_desktop.py VERSION

Deployment 2 of docs/jupyterhub.md, the cheapest path that still runs every
part a user's desktop does: a user logs in to the real hub (PAM), the hub
spawns the drop-in's XpraDesktopSpawner, pointed at the version's xpra
(`c.XpraDesktopSpawner.xpra` and the build's PYTHONPATH and
XPRA_SYSTEM_CONF_DIRS in `c.Spawner.environment`, as docs/jupyterhub.md
says), which runs `xpra-request-display exec --xpra -- <that xpra> start`
under the real broker. Checked: the Xpra behind the lease is that version
(the kernel's /proc/PID/maps: its modules are loaded from the build),
`exec --xpra` added what that version needs (--sessions-dir for 5.x/6.x,
nothing for 3.1), the hub's proxy serves Xpra's HTML5 client at /user/<name>/
and Xpra's websocket answers the upgrade through the same route, the desktop's
xterm window is mapped on the lease's display, and stopping the server
through the REST API leaves nothing of the user (no lease, no X server, no
process of the user at all). The times from the start request to the hub's
"ready", to the page and websocket, and to the xterm window are printed.

Without ../shared/xpra-src the 5.x/6.x runs exit 77 (SKIPPED, with the
reason), never passed; with the sources but no build they fail.

Displays 1220-1228: 3.1.3 1220-1222, 5.0.8 1223-1225, 6.5.3 1226-1228.
User xpb-xver-a, the xpra-versions suite's own (the check reads every
process of the user).
"""

import base64
import http.client
import os
import re
import secrets
import sys
import time

import jhub_harness as h

USER = "xpb-xver-a"
FIRST_DISPLAY = {"3.1.3": 1220, "5.0.8": 1223, "6.5.3": 1226}
DEBIAN_VERSION = "3.1.3"


def version_under_test():
    if len(sys.argv) < 2 or sys.argv[1] not in FIRST_DISPLAY:
        print("usage: %s {%s}" % (sys.argv[0], ",".join(FIRST_DISPLAY)))
        sys.exit(1)
    return sys.argv.pop(1)  # the rest is unittest's


VERSION = version_under_test()
DISPLAYS = range(FIRST_DISPLAY[VERSION], FIRST_DISPLAY[VERSION] + 3)


def private_prefix():
    """The build's prefix from the fixture's manifest ("<version> <prefix>"
    lines, or "absent <reason>"); exits 77 (skipped) when the sources are
    absent, 1 when the manifest says nothing usable."""
    path = os.environ.get("XPB_XPRA_VERSIONS_MANIFEST", "")
    text = h.read_text(path) if path else ""
    if not text:
        print("FAIL: no manifest %r: run the fixture (ctest -L xpra-versions, or "
              "scripts/build-xpra-versions.sh --manifest FILE)" % path)
        sys.exit(1)
    prefixes = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "absent":
            print("SKIP: Xpra %s not tested: %s" % (VERSION, value))
            sys.exit(77)
        prefixes[key] = value
    prefix = prefixes.get(VERSION)
    if not prefix or not os.access(os.path.join(prefix, "bin", "xpra"), os.X_OK):
        print("FAIL: the manifest %s names no usable build of Xpra %s: %r" % (path, VERSION, prefix))
        sys.exit(1)
    return prefix


def private_build_env(prefix):
    """How a private build runs (../shared/xpra-src/README.md, docs/jupyterhub.md)."""
    return {"PATH": os.path.join(prefix, "bin") + ":" + h.SYSTEM_PATH,
            "PYTHONPATH": os.path.join(prefix, "lib", "python3", "dist-packages"),
            "XPRA_SYSTEM_CONF_DIRS": os.path.join(prefix, "etc", "xpra")}


def spawner_config(request_display, xpra_service, prefix):
    config = """
from jupyter_xpra_broker_proxy.spawner import XpraDesktopSpawner
c.JupyterHub.spawner_class = XpraDesktopSpawner
c.XpraDesktopSpawner.request_display = %r
c.XpraDesktopSpawner.pam_service = %r
""" % (request_display, xpra_service)
    if prefix:
        config += """
c.XpraDesktopSpawner.xpra = %r
c.Spawner.environment.update(%r)
""" % (os.path.join(prefix, "bin", "xpra"), private_build_env(prefix))
    return config


def xpra_modules_dir(pid):
    """Where the running Xpra's compiled modules come from, as the kernel maps them."""
    dirs = set()
    for line in h.read_text("/proc/%d/maps" % pid).splitlines():
        m = re.search(r"(/\S+)/xpra/\S+\.so$", line)
        if m:
            dirs.add(m.group(1))
    return dirs


def websocket_upgrade(url, path, token):
    """A websocket handshake through the hub's proxy, as the HTML5 client
    opens it; returns (status, headers)."""
    host, port = url.split("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path, headers={
            "Authorization": "token " + token,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
            "Sec-WebSocket-Protocol": "binary",
        })
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def xterm_window_mapped(x_server):
    """xwininfo on the lease's display, with the X server's own cookie (-auth):
    a mapped window of the desktop's xterm (class XTerm)."""
    argv = x_server.argv
    auth = argv[argv.index("-auth") + 1] if "-auth" in argv else None
    env = {"PATH": h.SYSTEM_PATH, "DISPLAY": ":%d" % h.display_argument(argv)}
    if auth:
        env["XAUTHORITY"] = auth
    r = h.run(["xwininfo", "-root", "-tree"], timeout=20, env=env)
    return r.returncode == 0 and re.search(r'\("xterm" "XTerm"\)', r.stdout) is not None


class XpraVersionDesktop(h.HubTestCase):
    RUN_NAME = "xver-" + VERSION.replace(".", "")

    @classmethod
    def prepare(cls):
        cls.prefix = PREFIX
        cls.broker = h.Broker(cls.run_, DISPLAYS)
        cls.broker.start()
        cls.passwords = h.set_passwords(cls.run_, [USER])
        cls.service = h.install_pam_service(cls.run_, cls.broker)
        cls.xpra_service = h.install_pam_service(cls.run_, cls.broker, sessions=False, suffix="xpra")
        python_dir = h.user_python_dir(cls.run_)
        cls.hub = h.Hub(cls.run_, cls.broker, cls.service, [USER],
                        spawner_config(cls.run_.paths.request_display, cls.xpra_service, cls.prefix),
                        hub_env={"PYTHONPATH": python_dir})
        cls.hub.start()

    def test_desktop_through_the_drop_in(self):
        uid = h.uid_of(USER)
        self.hub.login(USER, self.passwords[USER])
        started = time.monotonic()
        self.hub.start_server(USER, timeout=180)
        ready = time.monotonic() - started
        [lease] = self.broker.leases(USER)
        self.assertEqual(lease["purpose"], "jupyterhub xpra desktop")
        self.assertIn(lease["display"], DISPLAYS)
        [server] = h.xpra_servers_of_lease(lease)

        # The version under test runs: its modules, as the kernel maps them.
        expected_modules = (os.path.join(self.prefix, "lib", "python3", "dist-packages") if self.prefix
                            else "/usr/lib/python3/dist-packages")
        self.assertEqual(xpra_modules_dir(server.pid), {expected_modules}, server)
        if self.prefix:
            self.assertIn(os.path.join(self.prefix, "bin", "xpra"), server.argv[:2])
        # What exec --xpra adds for that version (docs/xpra-versions.md).
        sessions_dir = [a for a in server.argv if a.startswith("--sessions-dir=")]
        if VERSION == DEBIAN_VERSION:
            self.assertEqual(sessions_dir, [], server.argv)
        else:
            self.assertEqual(sessions_dir, ["--sessions-dir=" + lease["runtime_dir"]], server.argv)
            self.assertIn("--use-display=no", server.argv)
        self.assertIn("--socket-dir=" + lease["runtime_dir"], server.argv)
        self.assertIn("--tcp-auth=pam:service=" + self.xpra_service, server.argv)

        # The hub's proxy routes /user/<name>/ to Xpra: its HTML5 client page ...
        base = "/user/%s/" % USER
        status, body = self.hub.get_as_service(base)
        self.assertEqual(status, 200, body[:300])
        self.assertIn(b"xpra websockets client", body)
        # ... and the websocket the client opens from that page, same route.
        status, headers = websocket_upgrade(self.hub.url, base, self.hub.token)
        self.assertEqual(status, 101, headers)
        self.assertEqual(headers.get("upgrade", "").lower(), "websocket", headers)
        reachable = time.monotonic() - started

        # The desktop's window: the spawner's xterm, mapped on the lease's display.
        [x_server] = h.x_servers(uid, DISPLAYS)
        self.assertEqual(h.display_argument(x_server.argv), lease["display"])
        h.check_start_commands(self.run_.mark, server)
        h.wait_until(lambda: xterm_window_mapped(x_server), 60, 0.5,
                     what="the xterm window on :%d" % lease["display"])
        window = time.monotonic() - started
        h.measured("Xpra %s through the JupyterHub drop-in: start request to the hub's ready %.1f s, to the HTML5 "
                   "client and websocket through the hub's proxy %.1f s, to the xterm window %.1f s"
                   % (VERSION, ready, reachable, window))

        # That Xpra lets in the user's own password (PAM), nothing else; asked
        # with the version's own client.
        client, env = ((os.path.join(self.prefix, "bin", "xpra"), private_build_env(self.prefix)) if self.prefix
                       else ("/usr/bin/xpra", None))
        ok, wrong = h.xpra_info_with_passwords(self.run_, USER, self.passwords[USER], h.XpraSession(server).port,
                                               client, env)
        self.assertEqual(ok.returncode, 0, ok.stdout[-1500:] + ok.stderr[-1500:])
        self.assertRegex(ok.stdout, r"(?m)=:%d$" % lease["display"])
        self.assertNotEqual(wrong.returncode, 0, "Xpra let in a wrong password")

        web_root = [a.split("=", 1)[1] for a in server.argv if a.startswith("--html=")][0]
        stopped = time.monotonic()
        self.hub.stop_server(USER)
        self.assert_nothing_left(USER, DISPLAYS, within=30, what="after the stop")
        h.measured("Xpra %s through the JupyterHub drop-in: nothing of the user left %.1f s after the stop request"
                   % (VERSION, time.monotonic() - stopped))
        self.assertFalse(os.path.exists(web_root), "the spawner left its web root")
        # 5.x/6.x fall back to /tmp for their session dir without a runtime dir.
        for path in ("/tmp/%d" % lease["display"], "/tmp/xpra/%d" % lease["display"]):
            self.assertFalse(os.path.lexists(path) and os.lstat(path).st_uid == uid, "the session left " + path)
        self.assertNotIn("denied", self.broker.log_text())


if __name__ == "__main__":
    # Before anything starts: a skip (no sources) starts no broker and no hub.
    PREFIX = None if VERSION == DEBIAN_VERSION else private_prefix()
    h.main(__name__)
