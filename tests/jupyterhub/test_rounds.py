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

import jhub_harness as h

USERS = ("xpb-alice", "xpb-bob")
DISPLAYS = range(1010, 1030)
ROUNDS = int(os.environ.get("XPB_JHUB_ROUNDS", "50"))  # fewer only when debugging by hand
# After the hub says the server stopped, the client still waits for Xpra to
# exit and for the broker to reap: this long at most.
CLEAN_WITHIN = 15.0


class StartStopRounds(h.HubTestCase):
    RUN_NAME = "rounds"

    @classmethod
    def prepare(cls):
        # Each user logs in once, as in real life.
        cls.broker, _, cls.deployment, cls.hub = h.start_proxy_hub(cls.run_, USERS, DISPLAYS)

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
                    h.check_start_commands(self.run_.mark, h.xpra_servers_of_lease(leases[0])[0])

                self.hub.stop_server(user)
                # Xpra, its X server, the client, xterm, the notebook server:
                # all carry the run's mark (checked in round 1 above).
                record["clean_s"].append(h.wait_nothing_left(self.broker, self.run_.mark, user, DISPLAYS,
                                                             CLEAN_WITHIN, "round %d" % n))
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
