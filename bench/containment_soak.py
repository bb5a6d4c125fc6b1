#!/usr/bin/env python3
"""Containment soak: N brokered Xpra sessions, ended through a random mix of
every end path, then every process the users have left is counted.

Xpra runs as a real host has it: Debian's default Xpra config, dbus-x11
installed, so each session's `dbus-launch` starts a dbus-daemon that calls
setsid and leaves xpra's tree, and `start = /etc/X11/Xsession true` runs the
Xsession scripts (ssh-agent among them). Only features that reach outside the
host are off (mdns, html, printing, webcam, pulseaudio).

End paths (docs/lifecycle.md), per session: the command exiting (`xpra
stop`), SIGTERM / SIGINT / SIGHUP to the client, SIGKILL of the client alone
and of its process group, `release` by the owner and by root. Per round (they
end every session of the round): the last PAM logout with reap=yes
(pamtester), the holders killed while the broker is down, and the reattach
grace running out (holders stopped across a broker restart).

    sudo bench/containment_soak.py [--sessions 200] [--parallel 4]
                                   [--build build] [--baseline-build DIR]

With --baseline-build (a build of another commit, e.g. main before the
change), the same mix (same seed) runs there first, and both results are
printed: the before and the after, in one run. --census-check N then runs N
sessions of the baseline's client (no keeper) against this broker, so the
census has real orphans to count. Needs root (it runs the
broker as root, which switches to xpra-broker, and the sessions as two users
it makes for the run, xpb-soak-a and xpb-soak-b). Leaves the host as it
found it: whatever the users have left is counted, printed, and then killed,
and the users it made are removed.
"""

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Users of their own, so the count is not mixed with a test's processes; made
# for the run and removed after it.
USERS = ["xpb-soak-a", "xpb-soak-b"]
XPRA_OPTIONS = ["--mdns=no", "--html=off", "--printing=no", "--webcam=no", "--pulseaudio=no"]
SESSION_PATHS = ["exit", "SIGTERM", "SIGINT", "SIGHUP", "kill9", "kill9-group", "release-owner", "release-root"]
ROUND_PATHS = ["pam-logout", "broker-restart-holders-killed", "reattach-grace-expired"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args):
    print(*args, flush=True)


def uid_of(user):
    import pwd
    return pwd.getpwnam(user).pw_uid


def as_user(user, argv):
    """argv run as `user`, exec'd in place (setpriv keeps the pid)."""
    return ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--reset-env", "--"] + argv


class Broker:
    def __init__(self, build, displays, tmp, client_build=None):
        self.brokerd = os.path.join(build, "broker", "xpra-brokerd")
        # The client the sessions run; status, list and release use this
        # build's own (it knows the broker's newest fields).
        self.session_client = os.path.join(client_build or build, "client", "xpra-request-display")
        self.client = os.path.join(build, "client", "xpra-request-display")
        self.run_dir = os.path.join(tmp, "run")
        self.socket = os.path.join(self.run_dir, "broker.sock")
        self.config = os.path.join(tmp, "broker.conf")
        self.log_path = os.path.join(tmp, "broker.log")
        with open(self.config, "w") as f:
            f.write("# empty: every setting comes from the command line\n")
        self.args = [self.brokerd, "--config=" + self.config, "--user=xpra-broker", "--group=xpra",
                     "--runtime-dir=" + self.run_dir, "--socket=" + self.socket, "--displays=" + displays,
                     "--failures-before-backoff=1000", "--acquire-burst=1000", "--acquires-per-minute=100000",
                     "--max-leases-per-user=64", "--reattach-grace-seconds=3"]
        self.proc = None

    def start(self):
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.call(["status"]).returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError("xpra-brokerd exited: " + open(self.log_path).read()[-3000:])
            time.sleep(0.2)
        raise RuntimeError("xpra-brokerd did not come up")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def call(self, args, user=None):
        argv = [self.client, "--socket", self.socket] + args
        return subprocess.run(as_user(user, argv) if user else argv, capture_output=True, text=True, timeout=120)

    def leases(self):
        r = self.call(["list", "--all", "--json"])
        return json.loads(r.stdout) if r.returncode == 0 else None

    def status(self):
        r = self.call(["status", "--json"])
        return json.loads(r.stdout) if r.returncode == 0 else None


class Session:
    def __init__(self, broker, user, own_group):
        self.user = user
        argv = as_user(user, [broker.session_client, "--socket", broker.socket, "exec", "--xpra", "--purpose", "soak",
                              "--", "xpra", "start"] + XPRA_OPTIONS)
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.out,
                                     start_new_session=own_group)
        self.lease = None


def wait_live(broker, sessions, timeout=180):
    """Until every session holds a lease and xpra says LIVE on it."""
    deadline = time.time() + timeout
    pending = list(sessions)
    while pending and time.time() < deadline:
        leases = broker.leases() or []
        by_pid = {lease.get("pid"): lease for lease in leases}
        for s in list(pending):
            if s.proc.poll() is not None:
                pending.remove(s)
                continue
            lease = by_pid.get(s.proc.pid)
            if not lease:
                continue
            s.lease = lease
            d = lease["runtime_dir"]
            r = subprocess.run(as_user(s.user, ["xpra", "list", "--socket-dir=" + d, "--socket-dirs=" + d]),
                               capture_output=True, text=True, timeout=60)
            if "LIVE session at :%d" % lease["display"] in r.stdout:
                pending.remove(s)
        time.sleep(0.3)
    return [s for s in sessions if s.proc.poll() is None and s.lease]


def end_session(broker, s, path):
    if path == "exit":
        d = s.lease["runtime_dir"]
        subprocess.run(as_user(s.user, ["xpra", "stop", ":%d" % s.lease["display"], "--socket-dir=" + d,
                                        "--socket-dirs=" + d]), capture_output=True, timeout=120)
    elif path in ("SIGTERM", "SIGINT", "SIGHUP"):
        s.proc.send_signal(getattr(signal, path))
    elif path == "kill9":
        s.proc.kill()
    elif path == "kill9-group":
        os.killpg(s.proc.pid, signal.SIGKILL)
    elif path == "release-owner":
        broker.call(["release", ":%d" % s.lease["display"]], user=s.user)
    elif path == "release-root":
        broker.call(["release", s.lease["lease"]])


def pam_logout(broker, module, users):
    service = "xpra-broker-soak-%d" % os.getpid()
    path = "/etc/pam.d/" + service
    with open(path, "w") as f:
        f.write("session required %s socket=%s reap=yes timeout=5000\n" % (module, broker.socket))
    try:
        for u in users:
            subprocess.run(["pamtester", service, u, "open_session", "close_session"], capture_output=True,
                           timeout=120)
    finally:
        os.unlink(path)


def wait_ended(broker, sessions, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(s.proc.poll() is not None for s in sessions) and broker.leases() == []:
            return True
        time.sleep(0.2)
    return False


def user_processes(users):
    """Every live process of `users`: (user, pid, comm)."""
    uids = {uid_of(u): u for u in users}
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat("/proc/" + entry)
            if st.st_uid not in uids:
                continue
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if state != "Z":
            out.append((uids[st.st_uid], int(entry), comm))
    return out


def kill_user_processes(users):
    for _ in range(50):
        left = user_processes(users)
        if not left:
            return
        for _, pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


def soak(build, args, label, client_build=None, sessions=None):
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="xpb-soak-")
    os.chmod(tmp, 0o755)
    broker = Broker(build, args.displays, tmp, client_build)
    sessions_wanted = sessions or args.sessions
    module = os.path.join(build, "pam", "pam_xpra_broker.so")
    broker.start()
    paths = collections.Counter()
    ended = 0
    rounds = 0
    started_at = time.time()
    orphans_max = 0
    try:
        while ended < sessions_wanted:
            rounds += 1
            n = min(args.parallel, sessions_wanted - ended)
            round_path = rng.choice(ROUND_PATHS) if rng.random() < 0.25 else None
            sessions = [Session(broker, USERS[(ended + i) % len(USERS)], own_group=True) for i in range(n)]
            live = wait_live(broker, sessions)
            if round_path == "pam-logout" and os.path.exists(module):
                pam_logout(broker, module, sorted({s.user for s in live}))
                paths[round_path] += len(live)
            elif round_path == "broker-restart-holders-killed":
                broker.stop()
                for s in live:
                    s.proc.kill()
                broker.start()
                paths[round_path] += len(live)
            elif round_path == "reattach-grace-expired":
                broker.stop()
                for s in live:
                    s.proc.send_signal(signal.SIGSTOP)
                broker.start()
                deadline = time.time() + 60
                while time.time() < deadline and broker.leases() != []:
                    time.sleep(0.2)
                for s in live:
                    s.proc.send_signal(signal.SIGCONT)
                paths[round_path] += len(live)
            else:
                for s in live:
                    path = rng.choice(SESSION_PATHS)
                    end_session(broker, s, path)
                    paths[path] += 1
            paths["failed to start"] += n - len(live)
            if not wait_ended(broker, sessions):
                log("  round %d: sessions or leases did not end in time" % rounds)
                for s in sessions:
                    if s.proc.poll() is None:
                        s.proc.kill()
            for s in sessions:
                s.proc.wait()
            ended += n
            st = broker.status()
            if st:
                orphans_max = max(orphans_max, sum(x.get("orphans", 0) for x in st.get("x_servers", [])))
            if rounds % 10 == 0:
                log("  [%s] %d/%d sessions, %d processes of the users now, %.0f s" %
                    (label, ended, sessions_wanted, len(user_processes(USERS)), time.time() - started_at))
        # Let keepers and reapers finish, and the census count twice (5 s).
        time.sleep(15)
        st = broker.status() or {}
        left = user_processes(USERS)
        return {
            "label": label,
            "sessions": sessions_wanted,
            "seconds": round(time.time() - started_at),
            "end_paths": dict(paths),
            "left": len(left),
            "left_by_command": dict(collections.Counter(comm for _, _, comm in left)),
            "census_orphans_now": sum(x.get("orphans", 0) for x in st.get("x_servers", [])) if st else None,
            "census_orphans_max": orphans_max,
            "census_orphans_seen_total": st.get("orphans_seen_total"),
        }
    finally:
        broker.stop()
        kill_user_processes(USERS)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--parallel", type=int, default=4, help="sessions started and ended together per round")
    p.add_argument("--build", default=os.path.join(REPO, "build"))
    p.add_argument("--baseline-build", help="a build of another commit: the before, run first with the same mix")
    p.add_argument("--displays", default="1200-1299")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--census-check", type=int, default=0, metavar="N",
                   help="with --baseline-build: N more sessions of the baseline's client against this broker, "
                        "to show the census counting what they leave")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("containment_soak: run as root (it starts the broker and runs sessions as the test users)")
    if not shutil.which("dbus-launch"):
        sys.exit("containment_soak: dbus-launch is missing (apt-get install dbus-x11): the soak is about it")
    subprocess.run([os.path.join(REPO, "tests", "support", "create-test-users.sh")], check=True)  # xpra-broker
    made = []
    for u in USERS:
        if subprocess.run(["id", u], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", u], check=True)
            made.append(u)
    try:
        run_all(args)
    finally:
        kill_user_processes(USERS)
        for u in made:
            subprocess.run(["userdel", "--remove", u], capture_output=True)


def run_all(args):
    if user_processes(USERS):
        sys.exit("containment_soak: the test users already run processes; end them first: %s" %
                 user_processes(USERS))
    results = []
    if args.baseline_build:
        results.append(soak(args.baseline_build, args, "before"))
    results.append(soak(args.build, args, "after"))
    if args.baseline_build and args.census_check:
        # The census on real leaks: this broker, the baseline's client (no
        # keeper), so its sessions' dbus-daemons escape again.
        results.append(soak(args.build, args, "census", client_build=args.baseline_build,
                            sessions=args.census_check))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        log("%-6s %d sessions in %d s; processes of the users left afterwards: %d %s" %
            (r["label"], r["sessions"], r["seconds"], r["left"], r["left_by_command"] or ""))
        log("       census: orphans of ended leases now %s, at most %s after a round, seen in all %s" %
            (r["census_orphans_now"], r["census_orphans_max"], r["census_orphans_seen_total"]))
        log("       end paths: %s" % ", ".join("%s %d" % kv for kv in sorted(r["end_paths"].items())))


if __name__ == "__main__":
    main()
