#!/usr/bin/python3
"""The hub is killed with SIGKILL while two users' desktops run, and started
again on the same database: the servers it still tracks keep their displays
(same lease, same Xpra, no new acquire) and stay reachable through it; the
server it stops afterwards through the REST API (alice) and the one its own
shutdown stops (bob) end their leases, and nothing of either is left.

Displays 1050-1059.
"""

import re
import time

import jhub_harness as h

USERS = ("xpb-alice", "xpb-bob")
DISPLAYS = range(1050, 1060)


class HubKilledAndRestarted(h.HubTestCase):
    RUN_NAME = "hubkill"

    @classmethod
    def prepare(cls):
        cls.broker, _, cls.deployment, cls.hub = h.start_proxy_hub(cls.run_, USERS, DISPLAYS)

    def acquires(self):
        return len(re.findall(r" acquired purpose=", self.broker.log_text()))

    def test_sigkill_and_restart(self):
        before = {}
        for user in USERS:
            self.hub.start_server(user)
            status, body = self.hub.get_as_service(self.deployment.desktop_path(user))
            self.assertEqual(status, 200, body[:300])
            leases = self.broker.leases(user)
            self.assertEqual(len(leases), 1, leases)
            before[user] = leases[0]
        acquires = self.acquires()
        servers = {u: self.hub.server_model(u) for u in USERS}

        self.hub.kill9()
        time.sleep(2)  # long enough for anything that would die with the hub to die
        for user in USERS:
            after = self.broker.leases(user)
            self.assertEqual([(l["lease"], l["display"], l["state"]) for l in after],
                             [(before[user]["lease"], before[user]["display"], "active")],
                             "%s's lease changed while the hub was down" % user)
            self.assertTrue(h.xpra_servers_of_lease(after[0]), "%s's Xpra died with the hub" % user)

        started = time.monotonic()
        self.hub.start()
        for user in USERS:
            server = self.hub.server_model(user)
            self.assertIsNotNone(server, "the restarted hub lost %s's server" % user)
            self.assertTrue(server["ready"], server)
            self.assertEqual(server["url"], servers[user]["url"])
            # Still the same Xpra behind the same lease, reachable through the
            # new proxy routes.
            status, body = self.hub.get_as_service(self.deployment.desktop_path(user))
            self.assertEqual(status, 200, body[:300])
            self.assertIn(b"xpra websockets client", body)
            self.assertEqual([l["lease"] for l in self.broker.leases(user)], [before[user]["lease"]])
        self.assertEqual(self.acquires(), acquires, "a display was acquired again after the hub restart")
        h.measured("hub restarted after SIGKILL in %.1f s; both servers tracked, same leases (%s)"
                   % (time.monotonic() - started, {u: ":%d" % before[u]["display"] for u in USERS}))

        # alice: stopped through the REST API of the restarted hub, which no
        # longer has a Popen handle, only the pid from its database.
        self.hub.stop_server("xpb-alice")
        self.assert_nothing_left("xpb-alice", DISPLAYS, what="after the REST stop")
        self.assertEqual(len(self.broker.leases("xpb-bob")), 1, "stopping alice ended bob's lease")

        # bob: the hub's own shutdown (SIGTERM, cleanup_servers) stops him.
        self.hub.stop()
        self.assert_nothing_left("xpb-bob", DISPLAYS, what="after the hub's shutdown")
        self.assertEqual(self.broker.status()["leases"], 0)


if __name__ == "__main__":
    h.main(__name__)
