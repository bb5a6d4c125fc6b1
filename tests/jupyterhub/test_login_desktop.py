#!/usr/bin/python3
"""Two real users log in to JupyterHub with their passwords (login form,
PAM), start their servers, open the Xpra desktop through the hub's proxy,
and get a brokered display in their own directory; a real Xpra client
reaches each session on its private Unix socket as the user, with no
password, and not as another user (not even through an opened-up socket:
Xpra checks the peer's uid). Stopping the servers ends everything, and so does a
notebook server killed with SIGKILL (the client's --end-with-parent).

Displays 1000-1009.
"""

import os
import socket
import stat
import time

import jhub_harness as h

USERS = ("xpb-alice", "xpb-bob")
DISPLAYS = range(1000, 1010)


class LoginAndDesktop(h.HubTestCase):
    RUN_NAME = "login"

    @classmethod
    def prepare(cls):
        cls.broker, cls.passwords, cls.deployment, cls.hub = h.start_proxy_hub(cls.run_, USERS, DISPLAYS, log_in=False)

    def test_1_wrong_password_is_refused(self):
        with self.assertRaises(h.HubError):
            self.hub.login("xpb-alice", self.passwords["xpb-alice"] + "x")
        with self.assertRaises(h.HubError):
            self.hub.login("xpb-mallory", "not-allowed-anyway")

    def test_2_each_user_gets_a_brokered_display_and_a_reachable_xpra(self):
        browsers = {}
        for user in USERS:
            opener, final, _ = self.hub.login(user, self.passwords[user])
            browsers[user] = opener
            # The hub's own spawn page, as a browser opens it after login.
            with opener.open(self.hub.url + "/hub/spawn", timeout=120) as r:
                self.assertIn(r.status, (200,), r.geturl())
        for user in USERS:
            self.hub.wait_ready(user)
        started = time.monotonic()
        for user in USERS:
            # The browser opens the desktop: the notebook's OAuth round trip
            # with the hub, then jupyter-server-proxy starts Xpra and proxies
            # its HTML5 client page (mappath adds the credentials).
            with browsers[user].open(self.hub.url + self.deployment.desktop_path(user), timeout=120) as r:
                page = r.read().decode(errors="replace")
                self.assertEqual(r.status, 200)
            self.assertIn("xpra websockets client", page, "not Xpra's HTML5 client page")
        h.measured("Xpra desktops of two users reachable through the hub %.1f s after the first request"
                   % (time.monotonic() - started))

        displays = set()
        for user in USERS:
            with self.subTest(user=user):
                uid = h.uid_of(user)
                leases = self.broker.leases(user)
                self.assertEqual(len(leases), 1, leases)
                lease = leases[0]
                display, runtime_dir = lease["display"], lease["runtime_dir"]
                displays.add(display)
                self.assertIn(display, DISPLAYS)
                self.assertEqual(lease["uid"], uid)
                self.assertEqual(lease["state"], "active")
                self.assertEqual(lease["purpose"], "jupyter-server-proxy xprahtml5")
                # The user's directory: made by the broker (PAM session at
                # spawn), the user's, group xpra, 0770.
                self.assertEqual(runtime_dir, os.path.join(self.broker.runtime_dir, str(uid)))
                st = os.lstat(runtime_dir)
                self.assertTrue(stat.S_ISDIR(st.st_mode))
                self.assertEqual(st.st_uid, uid)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o770)

                servers = h.xpra_servers_of_lease(lease)
                self.assertEqual(len(servers), 1, "xpra start under the lease: %r" % servers)
                session = h.XpraSession(servers[0])
                # --xpra put the display and the directory on xpra's command line.
                self.assertEqual(session.display, display, servers[0].argv)
                self.assertIn("--socket-dir=" + runtime_dir, servers[0].argv)
                # The proxy's Unix socket, in a private 0700 dir of the user; no TCP port.
                self.assertIsNone(session.port, servers[0].argv)
                self.assertIsNotNone(session.socket, servers[0].argv)
                self.assertIn("--auth=peercred:uid=%d" % uid, servers[0].argv)
                st = os.lstat(os.path.dirname(session.socket))
                self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (uid, 0o700), session.socket)
                # The drop-in's start command (xterm), not the host's start= list.
                h.check_start_commands(self.run_.mark, servers[0])
                h.wait_until(lambda: os.path.exists(os.path.join(runtime_dir, "%s-%d" % (socket.gethostname(),
                                                                                           display))),
                             30, what="xpra's socket in " + runtime_dir)
                self.assertEqual(len(h.x_servers(uid, DISPLAYS)), 1, h.x_servers(uid, DISPLAYS))
                self.assertEqual(h.display_argument(h.x_servers(uid, DISPLAYS)[0].argv), display)

                # A real Xpra client on that socket, as the user: no password.
                h.wait_until(lambda: os.path.exists(session.socket), 30, what=session.socket)
                info = session.client(user, "info")
                self.assertEqual(info.returncode, 0, info.stdout[-2000:] + info.stderr[-2000:])
                self.assertRegex(info.stdout, r"(?m)^display\.|^server\.")
                self.assertRegex(info.stdout, r"(?m)=:%d$" % display, "xpra info does not name :%d" % display)
                # ... and not as another user: the directory keeps them out,
                # and Xpra's peercred check does even when it does not.
                other = USERS[1] if user == USERS[0] else USERS[0]
                refused = session.client(other, "info")
                self.assertNotEqual(refused.returncode, 0, "xpra info as %s got into %s's desktop" % (other, user))
                socket_dir = os.path.dirname(session.socket)
                os.chmod(socket_dir, 0o711)
                os.chmod(session.socket, 0o666)
                try:
                    refused = session.client(other, "info")
                finally:
                    os.chmod(session.socket, 0o600)
                    os.chmod(socket_dir, 0o700)
                self.assertNotEqual(refused.returncode, 0,
                                    "xpra info as %s through an opened socket got into %s's desktop" % (other, user))
        self.assertEqual(len(displays), 2, "two users, one display each")

        for user in USERS:
            self.hub.stop_server(user)
        for user in USERS:
            self.assert_nothing_left(user, DISPLAYS, what="after the stop")

    def test_3_a_killed_notebook_server_takes_its_desktop_with_it(self):
        # The notebook server dies by SIGKILL (the OOM killer, a node
        # drained): jupyter-server-proxy cannot stop Xpra, but the client
        # runs with --end-with-parent, so the session ends and the lease is
        # released instead of holding a display for nobody.
        user = USERS[0]
        opener, _, _ = self.hub.login(user, self.passwords[user])
        with opener.open(self.hub.url + "/hub/spawn", timeout=120) as r:
            self.assertEqual(r.status, 200, r.geturl())
        self.hub.wait_ready(user)
        with opener.open(self.hub.url + self.deployment.desktop_path(user), timeout=120) as r:
            self.assertEqual(r.status, 200)
        leases = self.broker.leases(user)
        self.assertEqual(len(leases), 1, leases)
        client = h.processes_by_pid().get(leases[0]["pid"])
        self.assertIsNotNone(client, "the lease's holder is not running")
        notebook = client.ppid
        self.assertIn("jupyter", " ".join(h.processes_by_pid()[notebook].argv), "the client's parent")
        started = time.monotonic()
        os.kill(notebook, 9)
        took = self.assert_nothing_left(user, DISPLAYS, what="after the notebook server was killed")
        h.measured("desktop of a SIGKILLed notebook server gone %.1f s after the kill (%.1f s of waiting)"
                   % (time.monotonic() - started, took))
        # The hub notices its server is gone (its poll); make sure it is.
        try:
            self.hub.stop_server(user)
        except (h.HubError, AssertionError):
            pass


if __name__ == "__main__":
    h.main(__name__)
