#!/usr/bin/python3
"""Deployment 2: the hub spawns Xpra itself (XpraDesktopSpawner of the
drop-in, no notebook server). A user's server is an Xpra desktop on a
brokered display; the hub sees it up, its proxy serves Xpra's HTML5 client at
/user/<name>/, Xpra lets in the user's own password (PAM, an auth-only service)
and nothing else, and stopping the server through the REST API ends the lease
and everything under it.

Displays 1080-1089.
"""

import os

import jhub_harness as h

USER = "xpb-bob"
DISPLAYS = range(1080, 1090)


class DirectSpawner(h.HubTestCase):
    RUN_NAME = "direct"

    @classmethod
    def prepare(cls):
        cls.broker = h.Broker(cls.run_, DISPLAYS)
        cls.broker.start()
        cls.passwords = h.set_passwords(cls.run_, [USER])
        cls.service = h.install_pam_service(cls.run_, cls.broker)
        # What docs/jupyterhub.md recommends for Xpra's own password check:
        # auth and account only (Xpra, as the user, would run a session
        # stack's close, which the broker refuses from a non-root caller).
        cls.xpra_service = h.install_pam_service(cls.run_, cls.broker, sessions=False, suffix="xpra")
        python_dir = h.user_python_dir(cls.run_)
        spawner = """
from jupyter_xpra_broker_proxy.spawner import XpraDesktopSpawner
c.JupyterHub.spawner_class = XpraDesktopSpawner
c.XpraDesktopSpawner.request_display = %r
c.XpraDesktopSpawner.pam_service = %r
""" % (cls.run_.paths.request_display, cls.xpra_service)
        cls.hub = h.Hub(cls.run_, cls.broker, cls.service, [USER], spawner, hub_env={"PYTHONPATH": python_dir})
        cls.hub.start()

    def test_1_desktop_spawned_by_the_hub(self):
        self.hub.login(USER, self.passwords[USER])
        self.hub.start_server(USER)
        [lease] = self.broker.leases(USER)
        self.assertEqual(lease["purpose"], "jupyterhub xpra desktop")
        self.assertIn(lease["display"], DISPLAYS)
        [server] = h.xpra_servers_of_lease(lease)
        session = h.XpraSession(server)
        self.assertEqual(session.display, lease["display"])
        self.assertIn("--socket-dir=" + lease["runtime_dir"], server.argv)
        self.assertIn("--tcp-auth=pam:service=" + self.xpra_service, server.argv)
        # The spawner's start_command (xterm), not the host's start= list.
        h.check_start_commands(self.run_.mark, server)

        # The hub's proxy routes /user/<name>/ to Xpra, which serves its client there.
        status, body = self.hub.get_as_service("/user/%s/" % USER)
        self.assertEqual(status, 200, body[:300])
        self.assertIn(b"xpra websockets client", body)

        # Xpra lets in the user's own password, nothing else.
        ok, wrong = h.xpra_info_with_passwords(self.run_, USER, self.passwords[USER], session.port)
        self.assertEqual(ok.returncode, 0, ok.stdout[-1500:] + ok.stderr[-1500:])
        self.assertRegex(ok.stdout, r"(?m)=:%d$" % lease["display"])
        self.assertNotEqual(wrong.returncode, 0, "Xpra let in a wrong password")

        web_root = [a.split("=", 1)[1] for a in server.argv if a.startswith("--html=")][0]
        self.hub.stop_server(USER)
        self.assert_nothing_left(USER, DISPLAYS, what="after the stop")
        self.assertFalse(os.path.exists(web_root), "the spawner left its web root")
        self.assertNotIn("denied", self.broker.log_text())

    def test_2_desktop_that_ended_by_itself_leaves_no_web_root(self):
        # Xpra gone before the hub stops the server (a failed start, a crash,
        # the user's own `xpra stop`): the hub's stop then never calls the
        # spawner's stop() (User.stop: only while poll() says running), but
        # clears its state.
        self.hub.login(USER, self.passwords[USER])
        self.hub.start_server(USER)
        [lease] = self.broker.leases(USER)
        [server] = h.xpra_servers_of_lease(lease)
        web_root = [a.split("=", 1)[1] for a in server.argv if a.startswith("--html=")][0]
        os.kill(server.pid, 9)
        h.wait_until(lambda: not self.broker.leases(USER), 30, what="the lease to end after Xpra was killed")
        self.hub.stop_server(USER)
        self.assert_nothing_left(USER, DISPLAYS, what="after the stop")
        self.assertFalse(os.path.exists(web_root), "the spawner left the web root of a desktop that ended by itself")


if __name__ == "__main__":
    h.main(__name__)
