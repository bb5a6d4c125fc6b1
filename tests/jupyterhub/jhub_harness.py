"""Harness of the jupyterhub suite: the real xpra-brokerd, a PAM service with
pam_xpra_broker.so, Debian's jupyterhub with configurable-http-proxy, real
users with passwords, and what the tests look at on the host (/proc).

Everything runs as root, as CI does. Every test starts its own broker on a
private runtime dir and socket with its own slice of displays 1000-1099, its
own hub on free localhost ports, and its own /etc/pam.d service; every
process it starts carries XPB_JHUB_MARK=<mark> in its environment (the hub
passes it to the users' servers, they to the client, Xpra and its X server),
so cleanup kills exactly what this run started, and a later run sweeps what
a killed run left.
"""

import contextlib
import glob
import http.cookiejar
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

PYTHON = "/usr/bin/python3"
# Debian's programs only: the pyenv python3 on a developer's PATH has none
# of Debian's modules (jupyterhub, notebook, xpra).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MARK_VARIABLE = "XPB_JHUB_MARK"
# Where Debian's node modules are. Debian's own node searches there anyway; a
# nodejs from elsewhere (NodeSource's, on some images) does not, and then
# configurable-http-proxy cannot find its modules.
NODE_PATH = "/usr/share/nodejs:/usr/lib/nodejs"
TEST_USERS = ("xpb-alice", "xpb-bob", "xpb-mallory", "xpb-carol", "xpb-dave")
HERE = os.path.dirname(os.path.abspath(__file__))


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def measured(message):
    """A number the suite reports (CI logs keep these lines)."""
    print("[ MEASURED ] " + message, flush=True)


# ------------------------------------------------------------------ paths


class Paths:
    """What CMake passes in (tests/jupyterhub/CMakeLists.txt)."""

    def __init__(self):
        def need(name):
            value = os.environ.get(name)
            if not value:
                raise RuntimeError("%s is not set; run the suite through ctest" % name)
            return value

        self.brokerd = need("XPB_BROKERD")
        self.request_display = need("XPB_REQUEST_DISPLAY")
        self.pam_module = need("XPB_PAM_MODULE")
        self.source_dir = need("XPB_SOURCE_DIR")
        self.dropin_dir = os.path.join(self.source_dir, "contrib", "jupyter")
        self.tests_dir = HERE


def require_root_or_skip():
    """77 is the suite's SKIP_RETURN_CODE: ctest shows it as skipped, never passed."""
    if os.geteuid() != 0:
        print("SKIP: the jupyterhub tests start the hub as root, write /etc/pam.d and switch users; run as root")
        sys.exit(77)
    for program in ("/usr/bin/jupyterhub", "/usr/bin/jupyterhub-singleuser", "/usr/bin/configurable-http-proxy",
                    "/usr/bin/xpra", "/usr/bin/Xvfb", "/usr/bin/xterm"):
        if not os.access(program, os.X_OK):
            # Not a skip: CI installs these (scripts/install-deps.sh).
            print("FAIL: %s is missing; run scripts/install-deps.sh" % program)
            sys.exit(1)


# ------------------------------------------------------------------ small helpers


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    """Polls until predicate() is truthy; returns its value, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid_of(user):
    return pwd.getpwnam(user).pw_uid


def read_text(path, limit=None):
    try:
        with open(path, errors="replace") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError:
        return ""


def tail(path, lines=80):
    return "\n".join(read_text(path).splitlines()[-lines:])


def as_user_preexec(user):
    entry = pwd.getpwnam(user)

    def become():
        os.initgroups(user, entry.pw_gid)
        os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
        os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
        os.chdir(entry.pw_dir)

    return become


def run(argv, timeout=60, user=None, env=None, check=False):
    """Runs argv (as `user` if given); returns the CompletedProcess (text)."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                       preexec_fn=as_user_preexec(user) if user else None)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (argv, r.returncode, r.stdout, r.stderr))
    return r


# ------------------------------------------------------------------ /proc


class Proc:
    __slots__ = ("pid", "ppid", "uid", "comm", "argv")

    def __init__(self, pid, ppid, uid, comm, argv):
        self.pid, self.ppid, self.uid, self.comm, self.argv = pid, ppid, uid, comm, argv

    def __repr__(self):
        return "pid %d uid %d %s" % (self.pid, self.uid, " ".join(self.argv)[:200] or self.comm)


def _read_proc(pid):
    base = "/proc/%d" % pid
    stat = read_text(base + "/stat")
    if not stat:
        return None
    lpar, rpar = stat.find("("), stat.rfind(")")
    fields = stat[rpar + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None  # zombies and the dead hold nothing
    uid = None
    for line in read_text(base + "/status").splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    if uid is None:
        return None
    argv = [a for a in read_text(base + "/cmdline").split("\0") if a]
    return Proc(pid, int(fields[1]), uid, stat[lpar + 1:rpar], argv)


def processes(uid=None):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        p = _read_proc(int(name))
        if p is not None and (uid is None or p.uid == uid):
            out.append(p)
    return out


def processes_by_pid(uid=None):
    return {p.pid: p for p in processes(uid)}


def environ_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def display_argument(argv):
    for a in argv[1:]:
        if re.fullmatch(r":\d+", a):
            return int(a[1:])
    return None


def x_servers(uid, displays):
    """X servers (Xvfb, xpra's "Xvfb-for-Xpra-:N") of uid on a display in `displays`."""
    out = []
    for p in processes(uid):
        if not p.comm.startswith(("Xvfb", "Xorg", "Xephyr")):
            continue
        d = display_argument(p.argv)
        if d is not None and d in displays:
            out.append(p)
    return out


def is_xpra(p):
    """The xpra server or client process (python3 /usr/bin/xpra ...)."""
    return any(os.path.basename(a) == "xpra" for a in p.argv[:2])


def xpra_processes(uid, mark):
    """Xpra processes of uid that this run started (other suites may run
    xpra as the same test users at the same time)."""
    return [p for p in marked_processes(mark, uid) if is_xpra(p)]


def marked_processes(mark, uid=None):
    """Live processes (of uid, if given) that carry this run's mark."""
    return [p for p in processes(uid) if environ_of(p.pid).get(MARK_VARIABLE) == mark]


def kill_processes(procs, what="leftover"):
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
            log("killed %s %r" % (what, p))


def remove_dead_bus_sockets(uid, since):
    """Removes the session bus sockets (/tmp/dbus-*) of `uid` bound since
    `since` (time.time()) that nobody listens on: what a dbus-daemon this test
    started outside the broker left (Xpra stops it with SIGINT, which leaves
    the socket; under a lease the broker removes it)."""
    for name in os.listdir("/tmp"):
        if not name.startswith("dbus-"):
            continue
        path = "/tmp/" + name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid or st.st_mtime < since:
            continue
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                continue  # a live bus
            except ConnectionRefusedError:
                pass
            except OSError:
                continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            log("removed dead session bus socket %s of uid %d" % (path, uid))


def end_x_servers(procs, display, uid):
    """Ends X servers this test left outside the broker: SIGTERM (an X server
    then removes its lock and socket), SIGKILL after 5 s; then what is left of
    the display's lock and socket, if `uid` owns them."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p.pid) and _read_proc(p.pid) for p in procs):
        time.sleep(0.1)
    kill_processes([p for p in procs if _read_proc(p.pid)], "X server that ignored SIGTERM")
    for path in ("/tmp/.X%d-lock" % display, "/tmp/.X11-unix/X%d" % display):
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(path).st_uid == uid:
                os.unlink(path)


def terminate(proc, grace):
    """SIGTERM to a child of ours, SIGKILL after `grace` seconds; reaped."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ------------------------------------------------------------------ run, scratch, cleanup


class TestRun:
    """One test module's run: a mark, a scratch dir, and an exit stack that
    undoes everything in reverse order, on success and on failure alike."""

    def __init__(self, name):
        self.name = name
        self.mark = "%s-%d-%s" % (name, os.getpid(), secrets.token_hex(4))
        self.paths = Paths()
        self.cleanups = contextlib.ExitStack()
        self.logs = []
        sweep_leftovers_of_dead_runs()
        self.scratch = tempfile.mkdtemp(prefix="xpb-jhub-%s-" % name, dir="/tmp")
        os.chmod(self.scratch, 0o755)  # the broker's user and the test users go through it
        if os.environ.get("XPB_JHUB_KEEP"):  # for debugging: keep the logs and configs
            self.cleanups.callback(log, "kept " + self.scratch)
        else:
            self.cleanups.callback(shutil.rmtree, self.scratch, True)
        self.cleanups.callback(remove_new_private_dirs, set(glob.glob(PRIVATE_DIR_PATTERN)))
        self.cleanups.callback(self._kill_marked)
        # ctest's timeout and Ctrl-C still clean up.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))

    def path(self, *parts):
        return os.path.join(self.scratch, *parts)

    def mkdir(self, *parts, mode=0o755, owner=None):
        path = self.path(*parts)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        if owner:
            shutil.chown(path, owner, pwd.getpwnam(owner).pw_gid)
        return path

    def environment(self, **extra):
        """A clean environment for what the test starts: Debian's PATH, the mark."""
        env = {
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "PYTHONDONTWRITEBYTECODE": "1",
            MARK_VARIABLE: self.mark,
        }
        env.update(extra)
        return env

    def _kill_marked(self):
        # Twice: a dying supervisor may start one more child in between.
        for _ in range(2):
            kill_processes([p for p in marked_processes(self.mark) if p.pid != os.getpid()])
            time.sleep(0.2)

    def show_on_failure(self, title, path, lines=80):
        self.logs.append((title, path, lines))

    def close(self, failed=False):
        """Undoes everything; first prints the logs if anything failed."""
        if failed or failure_seen:
            for title, path, lines in self.logs:
                # The test's own polling of the REST API is noise here.
                text = [l for l in read_text(path).splitlines() if not _POLLING.search(l)]
                print("---- %s (last %d lines of %s) ----\n%s" % (title, lines, path, "\n".join(text[-lines:])),
                      flush=True)
        self.cleanups.close()


# The drop-in's private dirs (setup_xpra); a notebook server killed by
# SIGKILL cannot remove its own (atexit), and the tests kill some.
PRIVATE_DIR_PATTERN = os.path.join(tempfile.gettempdir(), "xpra_broker_*_*")


def remove_new_private_dirs(before):
    """Removes the drop-in's private dirs of the test users that appeared during the run."""
    test_uids = {uid_of(u) for u in TEST_USERS}
    for path in set(glob.glob(PRIVATE_DIR_PATTERN)) - before:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid in test_uids:
                shutil.rmtree(path, ignore_errors=True)


_POLLING = re.compile(r"(GET /hub/api/users/[^ ]+ \(xpb-test@|Unrestricted access to /hub/api/users/)")


def sweep_leftovers_of_dead_runs():
    """What a run killed by SIGKILL (ctest's timeout) left: processes marked by
    a test process that is gone, and its /etc/pam.d service files."""
    for p in processes():
        mark = environ_of(p.pid).get(MARK_VARIABLE)
        if not mark:
            continue
        m = re.match(r".*-(\d+)-[0-9a-f]+$", mark)
        if m and not pid_alive(int(m.group(1))):
            kill_processes([p], "leftover of a dead run")
    for name in os.listdir("/etc/pam.d"):
        m = re.match(r"xpb-jhub-.*-(\d+)$", name)
        if m and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join("/etc/pam.d", name))


# ------------------------------------------------------------------ users


def set_passwords(run_, users):
    """Random passwords for the test users (chpasswd); locked again at the end."""
    passwords = {u: secrets.token_urlsafe(18) for u in users}
    for u in users:
        entry = pwd.getpwnam(u)  # the test_users fixture made them
        if not os.path.isdir(entry.pw_dir):
            os.makedirs(entry.pw_dir, 0o755)
            shutil.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    subprocess.run(["chpasswd"], input="".join("%s:%s\n" % kv for kv in passwords.items()), text=True, check=True)
    run_.cleanups.callback(lambda: [subprocess.run(["usermod", "--lock", u], capture_output=True) for u in users])
    return passwords


# ------------------------------------------------------------------ broker


class Broker:
    """The real xpra-brokerd as root, switching to xpra-broker:xpra, on a
    private runtime dir and socket, X files in the real /tmp (xpra's X
    server uses it)."""

    def __init__(self, run_, displays, options=()):
        self.run = run_
        self.displays = displays
        self.runtime_dir = run_.path("run")
        self.socket = os.path.join(self.runtime_dir, "broker.sock")
        self.log_path = run_.path("broker.log")
        self.options = list(options)
        self.proc = None
        run_.show_on_failure("broker log", self.log_path, 60)

    def start(self, timeout=60):
        argv = [self.run.paths.brokerd, "--config=/dev/null", "--user=xpra-broker", "--group=xpra",
                "--runtime-dir=" + self.runtime_dir, "--socket=" + self.socket,
                "--displays=%d-%d" % (self.displays.start, self.displays.stop - 1), "--log-level=debug"]
        argv += self.options
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.run.environment())
        self.run.cleanups.callback(self.stop)
        wait_until(lambda: self.proc.poll() is not None or self.client("status").returncode == 0, timeout,
                   what="the broker to answer on " + self.socket)
        if self.proc.poll() is not None:
            raise AssertionError("xpra-brokerd exited %d:\n%s" % (self.proc.returncode, tail(self.log_path)))
        log("broker up on %s, displays %d-%d" % (self.socket, self.displays.start, self.displays.stop - 1))

    def client(self, *args, timeout=30):
        return run([self.run.paths.request_display, "--socket", self.socket, "--timeout", "10"] + list(args),
                   timeout=timeout)

    def leases(self, user=None):
        r = self.client("list", "--all", "--json")
        if r.returncode != 0:
            raise AssertionError("list --all --json failed (%d): %s" % (r.returncode, r.stderr))
        leases = json.loads(r.stdout)
        return [l for l in leases if user is None or l["user"] == user]

    def status(self):
        r = self.client("status", "--json")
        if r.returncode != 0:
            raise AssertionError("status --json failed (%d): %s" % (r.returncode, r.stderr))
        return json.loads(r.stdout)

    def log_text(self):
        return read_text(self.log_path)

    def stop(self):
        terminate(self.proc, 15)


# ------------------------------------------------------------------ PAM


def install_pam_service(run_, broker, module_options="reap=yes", sessions=True, suffix=""):
    """/etc/pam.d/xpb-jhub-<test>[-suffix]-<pid>: pam_unix for auth and account,
    and (with `sessions`) the built pam_xpra_broker.so, by absolute path, for
    sessions. Removed at the end."""
    name = "xpb-jhub-%s%s-%d" % (run_.name, "-" + suffix if suffix else "", os.getpid())
    path = os.path.join("/etc/pam.d", name)
    with open(path, "w") as f:
        f.write("# written by the xpra-broker jupyterhub tests; removed when they end\n"
                "auth     required pam_unix.so\n"
                "account  required pam_unix.so\n")
        if sessions:
            f.write("session  optional %s socket=%s %s debug\n" % (run_.paths.pam_module, broker.socket,
                                                                   module_options))
    run_.cleanups.callback(lambda: os.path.exists(path) and os.unlink(path))
    return name


# ------------------------------------------------------------------ JupyterHub


class HubError(AssertionError):
    pass


class Hub:
    """Debian's jupyterhub as root with configurable-http-proxy, on free
    localhost ports, PAMAuthenticator with open_sessions on the test's PAM
    service, LocalProcessSpawner. `spawner_config` is Python appended to
    jupyterhub_config.py (the Spawner settings of the deployment under test)."""

    def __init__(self, run_, broker, pam_service, users, spawner_config, hub_env=None, separate_proxy=False,
                 name="hub", extra_config=""):
        self.run = run_
        # The proxy as its own service (contrib/jupyter/jupyterhub-proxy.service
        # and jupyterhub_config_proxy.py): the test starts it, the hub uses it.
        self.separate_proxy = separate_proxy
        self.proxy_proc = None
        self.proxy_log_path = run_.path(name + "-proxy.log")
        self.hub_env = dict(hub_env or {})
        self.broker = broker
        self.users = list(users)
        self.extra_config = extra_config
        self.pam_service = pam_service
        self.dir = run_.mkdir(name, mode=0o700)
        self.log_path = run_.path(name + ".log")
        self.port = free_port()
        self.hub_port = free_port()
        self.api_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.token = secrets.token_hex(32)
        self.proxy_token = secrets.token_hex(32)
        self.config_path = os.path.join(self.dir, "jupyterhub_config.py")
        with open(self.config_path, "w") as f:
            f.write(self._config(pam_service, spawner_config))
        self.proc = None
        run_.cleanups.callback(self.shutdown)
        run_.show_on_failure("hub log (with the users' servers' output)", self.log_path, 150)

    def _config(self, pam_service, spawner_config):
        return """# jupyterhub_config.py of a jupyterhub test (generated)
c.JupyterHub.bind_url = {url!r}
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.pid_file = {dir!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {dir!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {dir!r} + "/cookie_secret"
c.JupyterHub.pid_file = {dir!r} + "/jupyterhub.pid"
c.JupyterHub.log_level = "DEBUG"

c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.service = {pam_service!r}
c.PAMAuthenticator.open_sessions = True
c.Authenticator.allowed_users = set({users!r})

# The test's own token: admin of users and servers, and allowed to reach them.
c.JupyterHub.services = [{{"name": "xpb-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "xpb-test",
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
    "services": ["xpb-test"],
}}]

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.environment = {{
    "XPRA_BROKER_SOCKET": {socket!r},
    "XPRA_BROKER_REQUEST_DISPLAY": {client!r},
    {mark_var!r}: {mark!r},
    "PYTHONDONTWRITEBYTECODE": "1",
}}
{spawner_config}
{proxy_config}
{extra_config}
""".format(proxy_config=self._separate_proxy_config() if self.separate_proxy else "", extra_config=self.extra_config,
           url=self.url, hub_port=self.hub_port, api_port=self.api_port, proxy_token=self.proxy_token,
           dir=self.dir, pam_service=pam_service, users=self.users, token=self.token, socket=self.broker.socket,
           client=self.run.paths.request_display, mark_var=MARK_VARIABLE, mark=self.run.mark,
           spawner_config=spawner_config)

    def _separate_proxy_config(self):
        snippet = os.path.join(self.run.paths.dropin_dir, "jupyterhub_config_proxy.py")
        return """# The proxy apart from the hub: the shipped snippet, as an admin adds it,
# then this test's ports instead of the snippet's.
exec(compile(open({snippet!r}).read(), {snippet!r}, "exec"))
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
""".format(snippet=snippet, api_port=self.api_port, hub_port=self.hub_port)

    def proxy_service_argv(self):
        """ExecStart= of contrib/jupyter/jupyterhub-proxy.service, its ${VARS}
        set to this hub's ports (as the unit's Environment= lines would be
        edited), and the unit's other Environment= values."""
        unit = read_text(os.path.join(self.run.paths.dropin_dir, "jupyterhub-proxy.service"))
        values = {"PROXY_IP": "127.0.0.1", "PROXY_PORT": str(self.port), "PROXY_API_PORT": str(self.api_port),
                  "HUB_PORT": str(self.hub_port)}
        env, exec_start = {}, None
        for line in unit.splitlines():
            if line.startswith("Environment="):
                for item in line[len("Environment="):].split():
                    key, _, value = item.partition("=")
                    env[key] = value
            elif line.startswith("ExecStart="):
                exec_start = line[len("ExecStart="):]
        if exec_start is None:
            raise AssertionError("jupyterhub-proxy.service has no ExecStart=")
        for key in values:
            if key not in env:
                raise AssertionError("jupyterhub-proxy.service sets no %s" % key)
        argv = [re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], a) for a in exec_start.split()]
        extra = {k: v for k, v in env.items() if k not in values}
        return argv, extra

    def start_proxy_service(self, timeout=30):
        argv, extra = self.proxy_service_argv()
        with open(self.proxy_log_path, "ab") as out:
            self.proxy_proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=subprocess.STDOUT,
                                               env=self.run.environment(CONFIGPROXY_AUTH_TOKEN=self.proxy_token,
                                                                        **extra))
        self.run.cleanups.callback(terminate, self.proxy_proc, 10)
        self.run.show_on_failure("the proxy's log (its own service)", self.proxy_log_path, 60)

        def answers():
            if self.proxy_proc.poll() is not None:
                raise HubError("configurable-http-proxy exited %d:\n%s" % (self.proxy_proc.returncode,
                                                                           tail(self.proxy_log_path)))
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                    return True
            return False
        wait_until(answers, timeout, 0.1, what="configurable-http-proxy's API on port %d" % self.api_port)
        log("proxy service up (pid %d): %s" % (self.proxy_proc.pid, " ".join(argv)))

    # -- process

    def start(self, timeout=90):
        if self.separate_proxy and self.proxy_proc is None:
            self.start_proxy_service()
        with open(self.log_path, "ab") as out:
            out.write(b"\n===== jupyterhub start =====\n")
            out.flush()
            self.proc = subprocess.Popen(["/usr/bin/jupyterhub", "-f", self.config_path], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.run.environment(CONFIGPROXY_AUTH_TOKEN=self.proxy_token,
                                                                  NODE_PATH=NODE_PATH, **self.hub_env))
        try:
            wait_until(lambda: self.proc.poll() is not None or self._answers(), timeout, 0.25,
                       what="jupyterhub to answer on " + self.url)
        except AssertionError:
            raise HubError("jupyterhub did not come up; its log:\n" + tail(self.log_path))
        if self.proc.poll() is not None:
            raise HubError("jupyterhub exited %d; its log:\n%s" % (self.proc.returncode, tail(self.log_path)))
        log("hub up on %s (pid %d)" % (self.url, self.proc.pid))

    def _answers(self):
        try:
            with urllib.request.urlopen(self.url + "/hub/api/", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def proxy_pid(self):
        text = read_text(os.path.join(self.dir, "proxy.pid")).strip()
        return int(text) if text.isdigit() else None

    def kill9(self):
        """SIGKILL to the hub only: its proxy and the users' servers stay."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        """SIGTERM: the hub stops the servers it runs (cleanup_servers) and its proxy
        (a proxy of its own: not the separate service's)."""
        terminate(self.proc, 60)

    def restart(self):
        """What `systemctl restart jupyterhub` does: SIGTERM, then a new hub."""
        self.stop()
        self.start()

    def shutdown(self):
        self.stop()
        pid = self.proxy_pid()
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_text(self):
        return read_text(self.log_path)

    # -- REST API with the test's token

    def api(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + "/hub/api" + path, data=data, method=method,
                                         headers={"Authorization": "token " + self.token,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def user_model(self, user):
        status, model = self.api("GET", "/users/" + user)
        if status != 200:
            raise HubError("GET /users/%s: %s %s" % (user, status, model))
        return model

    def server_model(self, user):
        return self.user_model(user).get("servers", {}).get("")

    def request_start(self, user):
        status, body = self.api("POST", "/users/%s/server" % user)
        if status not in (201, 202):
            raise HubError("POST /users/%s/server: %s %s" % (user, status, body))

    def wait_ready(self, user, timeout=90):
        def ready():
            server = self.server_model(user)
            if server is None:
                raise HubError("the server of %s went away while starting; hub log:\n%s"
                               % (user, tail(self.log_path, 60)))
            return server if server.get("ready") else None
        return wait_until(ready, timeout, 0.2, what="the server of %s to be ready" % user)

    def start_server(self, user, timeout=90):
        self.request_start(user)
        return self.wait_ready(user, timeout)

    def request_stop(self, user):
        status, body = self.api("DELETE", "/users/%s/server" % user)
        if status not in (202, 204):
            raise HubError("DELETE /users/%s/server: %s %s" % (user, status, body))

    def wait_stopped(self, user, timeout=60):
        wait_until(lambda: self.server_model(user) is None, timeout, 0.2, what="the server of %s to stop" % user)

    def stop_server(self, user, timeout=60):
        self.request_stop(user)
        self.wait_stopped(user, timeout)

    def get_as_service(self, path, timeout=120):
        """GET through the hub's proxy with the test's token (scope access:servers)."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": "token " + self.token})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # -- a browser: the login form and cookies

    def browser(self):
        jar = http.cookiejar.CookieJar()
        return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar

    def login(self, user, password):
        """Posts the login form; returns (opener, final URL, body) or raises HubError."""
        opener, jar = self.browser()
        with opener.open(self.url + "/hub/login", timeout=30) as r:
            page = r.read().decode(errors="replace")
        form = {"username": user, "password": password}
        m = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
        if m:
            form["_xsrf"] = m.group(1)
        data = urllib.parse.urlencode(form).encode()
        try:
            with opener.open(self.url + "/hub/login?next=%2Fhub%2Fhome", data=data, timeout=60) as r:
                body = r.read().decode(errors="replace")
                final = r.geturl()
        except urllib.error.HTTPError as e:
            raise HubError("login of %s refused: HTTP %d" % (user, e.code))
        if not any(c.name == "jupyterhub-hub-login" for c in jar):
            raise HubError("login of %s: no hub login cookie (ended at %s)" % (user, final))
        return opener, final, body


# ------------------------------------------------------------------ the users' servers


def user_python_dir(run_):
    """<scratch>/python, readable by everyone: the drop-in (package and
    snippet) and the tests' proxy emulation, extension and driver. The users
    run these from here, so the source tree need not be readable by them."""
    path = run_.mkdir("python")
    if not os.path.exists(os.path.join(path, "jupyter_xpra_broker_proxy")):
        shutil.copytree(os.path.join(run_.paths.dropin_dir, "jupyter_xpra_broker_proxy"),
                        os.path.join(path, "jupyter_xpra_broker_proxy"))
        shutil.copy(os.path.join(run_.paths.dropin_dir, "jupyter_server_config.py"), path)
        for module in ("server_proxy_emulation.py", "server_proxy_extension.py", "proxy_driver.py"):
            shutil.copy(os.path.join(run_.paths.tests_dir, module), path)
        # jupyter-server-proxy's nbextension, where its package installs it
        # (<data dir>/nbextensions/jupyter_server_proxy/), under JUPYTER_PATH.
        nbextension = os.path.join(path, "jupyter-data", "nbextensions", "jupyter_server_proxy")
        os.makedirs(nbextension)
        shutil.copy(os.path.join(run_.paths.tests_dir, "nbextension", "tree.js"), nbextension)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
    return path


def shared_socket_dir(run_):
    """A socket dir like the packaged /run/xpra (root:xpra, 1775): the test
    users are not in group xpra, so an Xpra start that must put its socket
    there fails, after it has started its X server."""
    path = run_.mkdir("shared-xpra", mode=0o1775)
    shutil.chown(path, "root", "xpra")
    os.chmod(path, 0o1775)
    return path


class ProxyDeployment:
    """Deployment 1 of docs/jupyterhub.md: each user's server is Debian's
    jupyterhub-singleuser (classic notebook 6.4) with jupyter-server-proxy's
    behaviour (server_proxy_extension) and the drop-in's snippet
    (contrib/jupyter/jupyter_server_config.py) as its config, executed as it
    is. A user in `failing` gets one more line after the snippet: Xpra's
    socket dir is a shared one they cannot write (root:xpra 1775, as
    /run/xpra is packaged), so every start fails after Xpra has started its
    X server: the seed's failure.

    What the users run is copied into the scratch dir: the source tree need
    not be readable by them."""

    SERVER = "xprahtml5"

    def __init__(self, run_, failing=(), failing_timeout=None):
        self.run = run_
        self.python_dir = user_python_dir(run_)
        snippet = os.path.join(self.python_dir, "jupyter_server_config.py")
        self.shared_socket_dir = shared_socket_dir(run_)
        self.config_dirs = {}
        self.default_config_dir = self._config_dir("default", snippet, extra="")
        for user in failing:
            self.config_dirs[user] = self._config_dir(
                "failing-" + user, snippet,
                extra='c.ServerProxy.servers["%s"] = setup_xpra(extra_xpra_args=["--socket-dir=%s"]%s)\n'
                      % (self.SERVER, self.shared_socket_dir,
                         ", timeout=%r" % failing_timeout if failing_timeout else ""))

    def _config_dir(self, name, snippet, extra):
        path = self.run.mkdir("jupyter-config-" + name)
        with open(os.path.join(path, "jupyter_notebook_config.py"), "w") as f:
            f.write("# The drop-in's snippet, as an admin pastes it:\n"
                    "exec(compile(open(%r).read(), %r, 'exec'))\n" % (snippet, snippet))
            f.write(extra)
            f.write("# What jupyter-server-proxy would add by being installed:\n"
                    "c.NotebookApp.nbserver_extensions = {'server_proxy_extension': True}\n")
        os.chmod(os.path.join(path, "jupyter_notebook_config.py"), 0o644)
        # The launcher entry: what jupyter-server-proxy's package installs as
        # etc/jupyter/nbconfig/tree.d/jupyter-server-proxy.json.
        nbconfig = os.path.join(path, "nbconfig", "tree.d")
        os.makedirs(nbconfig)
        for d in (os.path.join(path, "nbconfig"), nbconfig):
            os.chmod(d, 0o755)
        with open(os.path.join(nbconfig, "jupyter-server-proxy.json"), "w") as f:
            json.dump({"load_extensions": {"jupyter_server_proxy/tree": True}}, f)
        os.chmod(os.path.join(nbconfig, "jupyter-server-proxy.json"), 0o644)
        return path

    def spawner_config(self):
        return """
CONFIG_DIRS = {dirs!r}
c.Spawner.cmd = ["/usr/bin/jupyterhub-singleuser"]
c.Spawner.environment.update({{
    "JUPYTERHUB_SINGLEUSER_APP": "notebook.notebookapp.NotebookApp",
    "PYTHONPATH": {python!r},
    # A system-wide config dir, as /etc/jupyter is (the user's own ~/.jupyter stays theirs).
    "JUPYTER_CONFIG_PATH": lambda spawner: CONFIG_DIRS.get(spawner.user.name, {default!r}),
    # A system-wide data dir, as /usr/share/jupyter is: the proxy's nbextension.
    "JUPYTER_PATH": {data!r},
}})
""".format(dirs=self.config_dirs, python=self.python_dir, default=self.default_config_dir,
           data=os.path.join(self.python_dir, "jupyter-data"))

    def desktop_path(self, user):
        return "/user/%s/%s/" % (user, self.SERVER)


def start_proxy_hub(run_, users, displays, broker_options=(), failing=(), log_in=True, failing_timeout=None,
                    separate_proxy=False):
    """Deployment 1 on a fresh broker: the broker, passwords for `users`, the
    PAM service, the users' servers (ProxyDeployment) and the hub; each user
    logged in once through the form unless `log_in` is false.
    Returns (broker, passwords, deployment, hub)."""
    broker = Broker(run_, displays, broker_options)
    broker.start()
    passwords = set_passwords(run_, users)
    service = install_pam_service(run_, broker)
    deployment = ProxyDeployment(run_, failing=failing, failing_timeout=failing_timeout)
    hub = Hub(run_, broker, service, users, deployment.spawner_config(), separate_proxy=separate_proxy)
    hub.start()
    if log_in:
        for user in users:
            hub.login(user, passwords[user])
    return broker, passwords, deployment, hub


# ------------------------------------------------------------------ Xpra as its users see it


class XpraSession:
    """The Xpra server behind a lease, as root reads it from /proc: the Unix
    socket the drop-in binds (its only listening socket besides the broker
    dir's), and its TCP port if it has one (deployment 2)."""

    def __init__(self, proc):
        self.proc = proc
        self.port = self.socket = None
        for a in proc.argv:
            if a.startswith("--bind-tcp="):
                self.port = int(a.rsplit(":", 1)[1])
            elif a.startswith("--bind=/"):
                self.socket = a.split("=", 1)[1]
        self.display = display_argument(proc.argv)

    def client(self, user, subcommand="info", timeout=60):
        """`xpra SUBCOMMAND socket:PATH` as `user` (no password: Xpra checks the uid)."""
        argv = ["/usr/bin/xpra", subcommand, "socket:" + self.socket]
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": pwd.getpwnam(user).pw_dir,
               "XDG_RUNTIME_DIR": "/nonexistent"}
        return run(argv, timeout=timeout, user=user, env=env)


def xpra_info_with_passwords(run_, user, password, port, xpra="/usr/bin/xpra", env=None):
    """`xpra info tcp://user@127.0.0.1:port/` as `user`, once with `password`
    and once with a wrong one, each from a password file of the user's;
    returns the two CompletedProcesses (right, wrong). `xpra` and `env` run
    another Xpra build's client."""
    uid = uid_of(user)
    secrets_dir = run_.mkdir(user + "-secrets", mode=0o700, owner=user)
    results = []
    for name, text in (("right", password), ("wrong", password + "x")):
        path = os.path.join(secrets_dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, uid, -1)
        argv = [xpra, "info", "tcp://%s@127.0.0.1:%d/" % (user, port), "--password-file=" + path]
        results.append(run(argv, user=user, env=dict(env or {"PATH": SYSTEM_PATH}, HOME=pwd.getpwnam(user).pw_dir,
                                                      LANG="C.UTF-8")))
    return results


def xpra_servers_of_lease(lease):
    """The `xpra start` processes among the lease's holder's descendants."""
    holder = lease["pid"]
    procs = processes(lease["uid"])
    children = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [holder]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if is_xpra(child) and "start" in child.argv:
                out.append(child)
            todo.append(child.pid)
    return out


def xpra_children(server):
    """argv of the live children of an `xpra start` process (its start commands among them)."""
    return [p.argv for p in processes(server.uid) if p.ppid == server.pid]


def host_start_processes(mark, uid):
    """Processes of uid from this run that the host's default Xpra start
    commands run (Debian: /etc/X11/Xsession true, its xmessage and its
    `ssh-agent x-terminal-emulator`), none of which the drop-in asks for."""
    return [p for p in marked_processes(mark, uid)
            if "/etc/X11/Xsession" in p.argv or p.comm in ("ssh-agent", "xmessage", "x-terminal-emul")]


def check_start_commands(mark, server, expected=("xterm", "-fa", "Monospace"), within=30):
    """Xpra runs the drop-in's start command, and nothing of the host's
    start= list (see host_start_processes). Raises AssertionError."""
    wait_until(lambda: list(expected) in xpra_children(server), within,
               what="xpra (pid %d) to start %s" % (server.pid, " ".join(expected)))
    extra = host_start_processes(mark, server.uid)
    if extra:
        raise AssertionError("xpra (pid %d) ran start commands the drop-in did not ask for: %r" % (server.pid, extra))


# ------------------------------------------------------------------ what a stopped server may leave: nothing


def leftovers(broker, mark, user, displays):
    """What is left of `user`'s desktops: leases, X servers on the test's
    displays, any process this run started as the user (Xpra, the client,
    xterm, the Jupyter server itself), and every other process of the user
    whatever its environment: the dbus-daemon that Debian's Xpra config
    starts (dbus-launch) runs with a clean one, so no mark finds it."""
    uid = uid_of(user)
    return {"leases": broker.leases(user), "x": x_servers(uid, displays), "marked": marked_processes(mark, uid),
            "processes": ["%d %s" % (p.pid, p.comm) for p in processes(uid)]}


def wait_nothing_left(broker, mark, user, displays, within=15.0, what="", interval=0.05):
    """Waits until nothing is left of `user`'s desktops; returns how long that
    took, or raises AssertionError naming what is left after `within` s."""
    left = {}

    def clean():
        left.clear()
        left.update(leftovers(broker, mark, user, displays))
        return not any(left.values())
    started = time.monotonic()
    try:
        wait_until(clean, within, interval)
    except AssertionError:
        raise AssertionError("%s%.0f s later, %s still has: %r" % (what + ": " if what else "", within, user, left))
    return time.monotonic() - started


class HubTestCase(unittest.TestCase):
    """One TestRun per test class: `prepare()` (a classmethod of the test)
    starts what the class needs on cls.run_; whatever happens, the run is
    undone at the end, with its logs printed if anything failed."""

    RUN_NAME = None

    @classmethod
    def prepare(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.run_ = TestRun(cls.RUN_NAME)
        try:
            cls.prepare()
        except BaseException:
            cls.run_.close(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.run_.close()

    def assert_nothing_left(self, user, displays, within=15.0, what=""):
        try:
            return wait_nothing_left(self.broker, self.run_.mark, user, displays, within, what)
        except AssertionError as e:
            self.fail(str(e))


failure_seen = False


class _RecordingResult(unittest.TextTestResult):
    """Notes the first failure, so that TestRun.close() shows the logs."""

    def addFailure(self, test, err):
        global failure_seen
        failure_seen = True
        super().addFailure(test, err)

    def addError(self, test, err):
        global failure_seen
        failure_seen = True
        super().addError(test, err)

    def addSubTest(self, test, subtest, err):
        global failure_seen
        if err is not None:
            failure_seen = True
        super().addSubTest(test, subtest, err)


def main(test_module_name):
    """Entry point of a test file: root or skip, then unittest; exit status for ctest."""
    require_root_or_skip()
    runner = unittest.TextTestRunner(resultclass=_RecordingResult, verbosity=2, stream=sys.stdout)
    program = unittest.main(module=test_module_name, exit=False, testRunner=runner)
    result = program.result
    if result.skipped:
        print("FAIL: %d test(s) skipped; the suite counts nothing skipped as passed" % len(result.skipped))
        sys.exit(1)
    if not result.wasSuccessful() or result.testsRun == 0:
        sys.exit(1)
    sys.exit(0)
