#!/usr/bin/python3
"""50 rounds of start and stop through the hub's REST API, for two users at
once: each round starts the user's server, opens the Xpra desktop through the
hub (jupyter-server-proxy starts Xpra through the broker), checks that the
lease, Xpra and its X server are there, stops the server, and checks that
no lease, no X server and no Xpra process of the user is left. The default
broker settings (quota, rate limit, back-off) stay on: a normal start and
stop must not trip them.

Displays 1010-1029.
"""

import os
import threading
import time
import unittest

import jhub_harness as h

USERS = ("xpb-alice", "xpb-bob")
DISPLAYS = range(1010, 1030)
ROUNDS = int(os.environ.get("XPB_JHUB_ROUNDS", "50"))  # fewer only when debugging by hand
# After the hub says the server stopped, the client still waits for Xpra to
# exit and for the broker to reap: this long at most.
CLEAN_WITHIN = 15.0


class StartStopRounds(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_ = h.TestRun("rounds")
        try:
            cls.broker = h.Broker(cls.run_, DISPLAYS)
            cls.broker.start()
            passwords = h.set_passwords(cls.run_, USERS)
            service = h.install_pam_service(cls.run_, cls.broker)
            cls.deployment = h.ProxyDeployment(cls.run_)
            cls.hub = h.Hub(cls.run_, cls.broker, service, USERS, cls.deployment.spawner_config())
            cls.hub.start()
            for user in USERS:  # each user logs in once, as in real life
                cls.hub.login(user, passwords[user])
        except BaseException:
            cls.run_.close(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.run_.close()

    def one_user(self, user, results):
        uid = h.uid_of(user)
        record = results[user] = {"rounds": 0, "clean_s": [], "displays": set(), "error": None}
        try:
            for n in range(1, ROUNDS + 1):
                self.hub.start_server(user)
                status, body = self.hub.get_as_service(self.deployment.desktop_path(user))
                if status != 200 or b"xpra websockets client" not in body:
                    raise AssertionError("round %d: the desktop of %s answered %s: %r" % (n, user, status, body[:300]))
                leases = self.broker.leases(user)
                if len(leases) != 1 or leases[0]["state"] != "active":
                    raise AssertionError("round %d: %s holds %r" % (n, user, leases))
                display = leases[0]["display"]
                record["displays"].add(display)
                if not h.xpra_servers_of_lease(leases[0]):
                    raise AssertionError("round %d: no xpra start under the lease of %s" % (n, user))
                if [h.display_argument(x.argv) for x in h.x_servers(uid, DISPLAYS)] != [display]:
                    raise AssertionError("round %d: X servers of %s: %r (lease on :%d)"
                                         % (n, user, h.x_servers(uid, DISPLAYS), display))
                if n == 1:  # what "nothing left" is checked on below
                    running = h.marked_processes(self.run_.mark, uid)
                    names = {p.comm for p in running}
                    if not (h.xpra_processes(uid, self.run_.mark) and any(c.startswith("Xvfb") for c in names)):
                        raise AssertionError("Xpra and its X server do not carry the run's mark: %r" % running)

                self.hub.stop_server(user)
                stopped = time.monotonic()
                left = {}

                def clean():
                    left["leases"] = self.broker.leases(user)
                    left["x"] = h.x_servers(uid, DISPLAYS)
                    left["xpra"] = h.xpra_processes(uid, self.run_.mark)
                    # Anything else started for the server (client, xterm,
                    # the notebook server itself) is gone too.
                    left["other"] = h.marked_processes(self.run_.mark, uid)
                    return not (left["leases"] or left["x"] or left["xpra"] or left["other"])
                try:
                    h.wait_until(clean, CLEAN_WITHIN, 0.05)
                except AssertionError:
                    raise AssertionError("round %d: %.0f s after the hub stopped the server of %s, left: %r"
                                         % (n, CLEAN_WITHIN, user, left))
                record["clean_s"].append(time.monotonic() - stopped)
                record["rounds"] = n
        except BaseException as e:  # reported by the main thread
            record["error"] = e

    def test_50_rounds_for_two_users_at_once(self):
        results = {}
        started = time.monotonic()
        threads = [threading.Thread(target=self.one_user, args=(u, results), name=u) for u in USERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        elapsed = time.monotonic() - started
        for user in USERS:
            r = results.get(user)
            self.assertIsNotNone(r, "the thread of %s did not report" % user)
            if r["error"]:
                raise AssertionError("%s after %d clean round(s): %s" % (user, r["rounds"], r["error"]))
            self.assertEqual(r["rounds"], ROUNDS)
        clean = sorted(s for u in USERS for s in results[u]["clean_s"])
        h.measured("%d start/stop rounds for %s at once through the REST API: %.1f s (%.2f s per round)"
                   % (ROUNDS, " and ".join(USERS), elapsed, elapsed / ROUNDS))
        h.measured("everything of a stopped server gone after the hub's stop: median %.2f s, max %.2f s (n=%d)"
                   % (clean[len(clean) // 2], clean[-1], len(clean)))
        h.measured("displays used: %s" % {u: sorted(results[u]["displays"]) for u in USERS})
        status = self.broker.status()
        self.assertEqual(status["leases"], 0)
        log = self.broker.log_text()
        self.assertNotIn("back-off after", log, "a normal start and stop tripped the back-off")
        self.assertNotIn("acquire rate limit", log)


if __name__ == "__main__":
    h.main(__name__)
