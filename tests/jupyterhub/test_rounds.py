#!/usr/bin/python3
"""25 rounds of start and stop through the hub's REST API, for two users at
once: each round starts the user's server, opens the Xpra desktop through the
hub (jupyter-server-proxy starts Xpra through the broker), checks that the
lease, Xpra and its X server are there, stops the server, and checks that
no lease, no X server and no Xpra process of the user is left. The default
broker settings (quota, rate limit, back-off) stay on: a normal start and
stop must not trip them.

Why 25 (this test ran 50 until 2026-12-07): each user's 25 acquires are
more than the rate limit's burst (10) and the back-off's threshold (3
failed sessions), and the two users' 50 acquires take the broker's rotating
display cursor 2.5 times round the 20 displays, so every display is handed
out again after a release, as it was with 50. A round's time is the
hub's, the notebook server's and Xpra's (reported by phase), none of it the
test's own waiting, so fewer rounds was the way to a shorter test.

Displays 1010-1029.
"""

import contextlib
import os
import threading
import time

import jhub_harness as h

USERS = ("xpb-alice", "xpb-bob")
DISPLAYS = range(1010, 1030)
ROUNDS = int(os.environ.get("XPB_JHUB_ROUNDS", "25"))  # fewer only when debugging by hand
# Where a round's time goes (reported, so that a slower round says why).
# The desktop page waits for jupyter-server-proxy's readiness checks, which
# double from 10 ms: an Xpra ready after 2.55 s is seen at 5.11 s.
PHASES = ("server start", "desktop page", "server stop")
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
        record = results[user] = {"rounds": 0, "clean_s": [], "displays": set(), "error": None,
                                  "phases": {phase: [] for phase in PHASES}}

        @contextlib.contextmanager
        def timed(phase):
            started = time.monotonic()
            yield
            record["phases"][phase].append(time.monotonic() - started)
        try:
            for n in range(1, ROUNDS + 1):
                with timed("server start"):
                    self.hub.start_server(user)
                with timed("desktop page"):
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

                with timed("server stop"):
                    self.hub.stop_server(user)
                # Xpra, its X server, the client, xterm, the notebook server:
                # all carry the run's mark (checked in round 1 above).
                record["clean_s"].append(h.wait_nothing_left(self.broker, self.run_.mark, user, DISPLAYS,
                                                             CLEAN_WITHIN, "round %d" % n))
                record["rounds"] = n
        except BaseException as e:  # reported by the main thread
            record["error"] = e

    def test_rounds_for_two_users_at_once(self):
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
        for phase in PHASES:
            times = sorted(t for u in USERS for t in results[u]["phases"][phase])
            h.measured("round phase %r: median %.2f s, max %.2f s (n=%d)"
                       % (phase, times[len(times) // 2], times[-1], len(times)))
        h.measured("displays used: %s" % {u: sorted(results[u]["displays"]) for u in USERS})
        status = self.broker.status()
        self.assertEqual(status["leases"], 0)
        log = self.broker.log_text()
        self.assertNotIn("back-off after", log, "a normal start and stop tripped the back-off")
        self.assertNotIn("acquire rate limit", log)


if __name__ == "__main__":
    h.main(__name__)
