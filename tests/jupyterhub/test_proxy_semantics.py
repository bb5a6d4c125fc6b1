#!/usr/bin/python3
"""jupyter-server-proxy's own semantics, without a hub and without PAM
sessions (the broker makes the user's directory at the first acquire):

1. the drop-in's command and environment survive the proxy's rendering
   (str.format with port, base_url, unix_socket), and the old recipes with
   {display} and {runtime_dir} do not (KeyError): the emulation would have
   caught the bug;
2. 200 failing starts under the proxy's supervision (immediate restart of
   every non-zero exit, SIGKILL when a request's start timeout passes): the
   X server of every start, sampled every 50 ms, is gone by the time that
   start has ended (plus the broker's reap when the start was SIGKILLed);
3. one successful start: the proxy sees it ready on {unix_socket}, gets
   Xpra's HTML5 client page there, and a real Xpra client reaches the
   session on that socket as the user, with no password; SIGTERM to the
   proxy ends it all.

The broker's back-off and rate limit are off here, so that every one of the
200 starts gets a display and starts an X server (the restart-loop test has
them on). The start timeout is 10 s instead of the drop-in's 90 s, so that
the SIGKILL at the end of a request happens about once every 25 starts
rather than never.

Displays 1060-1079.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jhub_harness as h
import server_proxy_emulation as jsp

USER = "xpb-alice"
DISPLAYS = range(1060, 1080)
STARTS = 200
START_TIMEOUT = 10
# A start that was SIGKILLed ends when the broker has reaped its lease
# (SIGTERM, Xvfb exits at once): this much later at most.
REAP_SLACK = 2.0
SAMPLE_EVERY = 0.05


class ProxySemantics(h.HubTestCase):
    RUN_NAME = "proxy"

    @classmethod
    def prepare(cls):
        cls.broker = h.Broker(cls.run_, DISPLAYS, ["--failures-before-backoff=1000", "--acquire-burst=100000",
                                                   "--acquires-per-minute=1000000"])
        cls.broker.start()
        cls.python_dir = h.user_python_dir(cls.run_)
        cls.socket_dir = h.shared_socket_dir(cls.run_)
        cls.work = cls.run_.mkdir("driver", mode=0o700, owner=USER)

    def driver(self, name, *args):
        """proxy_driver.py as the user, with the environment a user's server has."""
        events = os.path.join(self.work, name + ".events")
        out = open(self.run_.path(name + ".log"), "w")
        self.run_.show_on_failure("proxy driver output (%s)" % name, out.name, 60)
        env = self.run_.environment(HOME="/home/" + USER, USER=USER, PYTHONPATH=self.python_dir,
                                    XPRA_BROKER_SOCKET=self.broker.socket,
                                    XPRA_BROKER_REQUEST_DISPLAY=self.run_.paths.request_display)
        proc = subprocess.Popen([h.PYTHON, os.path.join(self.python_dir, "proxy_driver.py"), events, *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=h.as_user_preexec(USER))
        out.close()
        self.run_.cleanups.callback(lambda: proc.poll() is None and proc.kill())
        return proc, events

    @staticmethod
    def read_events(path):
        out = []
        for line in h.read_text(path).splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    # ------------------------------------------------------------------ 0

    def test_0_websocket_over_a_unix_socket_on_debians_tornado(self):
        """jupyter-server-proxy 4.1.2's websocket client (pingable_ws_connect,
        reproduced in server_proxy_extension) on the Unix socket of a real
        tornado websocket server: a TypeError on tornado 6.2 until the
        drop-in's tornado_compat is enabled, then a round trip."""
        import asyncio
        import tempfile
        import tornado
        from tornado import httpclient, httpserver, netutil, web, websocket
        sys.path.insert(0, self.run_.paths.dropin_dir)
        from jupyter_xpra_broker_proxy import tornado_compat
        import server_proxy_extension as ext

        class Echo(websocket.WebSocketHandler):
            def on_message(self, message):
                self.write_message(message, binary=isinstance(message, bytes))

        async def round_trip(path):
            request = httpclient.HTTPRequest(url="ws://localhost:0/")
            received = asyncio.get_running_loop().create_future()
            connection = await ext.pingable_ws_connect(
                request=request, on_message_callback=lambda m: received.done() or received.set_result(m),
                resolver=ext.UnixResolver(path))
            connection.write_message(b"\x00xpra", binary=True)
            answer = await asyncio.wait_for(received, 10)
            connection.close()
            return answer

        async def main():
            directory = tempfile.mkdtemp(dir=self.run_.scratch)
            path = os.path.join(directory, "ws.sock")
            server = httpserver.HTTPServer(web.Application([(r"/.*", Echo)]))
            server.add_socket(netutil.bind_unix_socket(path))
            try:
                if tornado.version_info < (6, 3):
                    self.assertTrue(tornado_compat.needed())
                    with self.assertRaises(TypeError):
                        await round_trip(path)
                self.assertEqual(tornado_compat.enable(), tornado.version_info < (6, 3))
                self.assertFalse(tornado_compat.needed())
                self.assertFalse(tornado_compat.enable(), "enabled twice")
                return await round_trip(path)
            finally:
                server.stop()

        self.assertEqual(asyncio.run(main()), b"\x00xpra")
        h.measured("tornado %s: websocket over a Unix socket as jupyter-server-proxy 4.1.2 opens it: %s"
                   % (tornado.version, "TypeError without tornado_compat, round trip with it"
                      if tornado.version_info < (6, 3) else "round trip, tornado_compat not needed"))

    # ------------------------------------------------------------------ 1

    def test_1_rendering(self):
        os.environ["XPRA_BROKER_REQUEST_DISPLAY"] = self.run_.paths.request_display
        sys.path.insert(0, self.run_.paths.dropin_dir)
        from jupyter_xpra_broker_proxy import setup_xpra
        config = setup_xpra()
        server = jsp.SupervisedServer("xprahtml5", config, base_url="/user/%s/" % USER)
        command, environment, unix_socket = server.get_cmd(), server.get_env(), server.unix_socket
        self.assertEqual(command[:4], [self.run_.paths.request_display, "exec", "--xpra", "--purpose"])
        self.assertEqual(command[command.index("--") + 1:command.index("--") + 3], ["/usr/bin/xpra", "start"])
        self.assertIn("--end-with-parent", command[:command.index("--")])
        # Xpra on the proxy's Unix socket, in the drop-in's private dir,
        # checking the peer's uid; no TCP port, no password, no key.
        self.assertEqual(server.port, 0, "a unix_socket server gets no port")
        self.assertEqual(os.path.dirname(unix_socket), environment["XDG_RUNTIME_DIR"])
        self.assertIn("--bind=" + unix_socket, command)
        self.assertIn("--auth=peercred:uid=%d" % os.getuid(), command)
        self.assertFalse([a for a in command if "tcp" in a or "password" in a or "encryption" in a], command)
        self.assertIn("--socket-dirs=$XPRA_BROKER_RUNTIME_DIR", command)
        for upstream in ("--html=on", "--start=xterm -fa Monospace",
                         "--clipboard-direction=both", "--no-mdns", "--no-bell", "--no-speaker", "--no-printing",
                         "--no-microphone", "--no-notifications", "--no-systemd-run", "--sharing", "--no-daemon"):
            self.assertIn(upstream, command)
        self.assertFalse([a for a in command if "{" in a or "}" in a], "a brace survived the rendering")
        self.assertFalse(any(":{" in a or a.startswith(":") for a in command), "the command names a display")
        private = environment["XDG_RUNTIME_DIR"]
        self.assertEqual(os.stat(private).st_mode & 0o777, 0o700)
        # Xpra reads <dir>/xpra/xpra.conf of the last XDG config dir after
        # /etc/xpra: the drop-in's, which empties the host's start commands.
        xdg_dirs = environment["XDG_CONFIG_DIRS"].split(":")
        self.assertEqual(xdg_dirs[:-1], (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"))
        with open(os.path.join(xdg_dirs[-1], "xpra", "xpra.conf")) as f:
            settings = [l.split("=", 1) for l in f.read().splitlines() if l.strip() and not l.startswith("#")]
        self.assertEqual(sorted((k.strip(), v.strip()) for k, v in settings), [("start", ""), ("start-child", "")])
        self.assertNotIn("XDG_CONFIG_DIRS", setup_xpra(host_start=True)["environment"])
        self.assertEqual(os.listdir(private), [], "the private dir holds something before Xpra's socket")
        self.assertEqual(server.get_timeout(), 90)
        # The launcher and the page carry no query string: nothing secret.
        self.assertEqual(server.map_path("/"), "/index.html")
        self.assertEqual(server.map_path("/js/Client.js"), "/js/Client.js")
        self.assertEqual(config["launcher_entry"]["path_info"], "xprahtml5/")

        # The recipes this replaces, rendered the same way, never started.
        old_readme = ["xpra-request-display", "exec", "--", "xpra", "start", ":{display}", "--daemon=no",
                      "--socket-dir={runtime_dir}", "--bind-tcp=0.0.0.0:{port}"]
        old_pam_md = ["xpra-request-display", "exec", "--", "xpra", "start", ":{display}", "--html=on",
                      "--bind={runtime_dir}/xpra-server,auth=none", "--socket-dir={runtime_dir}", "--daemon=no"]
        for old in (old_readme, old_pam_md):
            with self.assertRaises(KeyError):
                jsp.SupervisedServer("old", {"command": old}, base_url="/").get_cmd()

    # ------------------------------------------------------------------ 2

    def test_2_failing_starts_leave_no_x_server(self):
        uid = h.uid_of(USER)
        samples = []  # (t, [(pid, display)])
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                xs = h.x_servers(uid, DISPLAYS)
                samples.append((time.monotonic(), [(p.pid, h.display_argument(p.argv)) for p in xs]))
                stop.wait(SAMPLE_EVERY)

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        started = time.monotonic()
        proc, events_path = self.driver("failing", "failing", str(STARTS), str(START_TIMEOUT), self.socket_dir)
        try:
            code = proc.wait(400)
        finally:
            time.sleep(REAP_SLACK + 0.5)
            stop.set()
            sampling.join(10)
        elapsed = time.monotonic() - started
        self.assertEqual(code, 0, "the driver failed")
        events = self.read_events(events_path)
        starts = [e for e in events if e["ev"] == "start"]
        exits = {e["pid"]: e for e in events if e["ev"] == "exit"}
        timeouts = [e for e in events if e["ev"] == "timeout"]
        kills = [e for e in events if e["ev"] == "kill"]
        self.assertGreaterEqual(len(starts), STARTS)
        self.assertEqual(sorted(exits), sorted(e["pid"] for e in starts), "a start never ended")
        self.assertFalse([e for e in exits.values() if e["code"] == 0], "a failing start exited 0")
        self.assertGreaterEqual(len(timeouts), 2, "the start timeout (SIGKILL) never ended a request")

        # Every X server seen belongs to the start running when it was first
        # seen, and is gone once that start has ended.
        seen = {}  # pid -> [first, last, display]
        for t, xs in samples:
            for pid, display in xs:
                seen.setdefault(pid, [t, t, display])[1] = t
        overhang = []
        violations = []
        for pid, (first, last, display) in seen.items():
            owner = [s for s in starts if s["t"] <= first]
            if not owner:
                violations.append("X server %d on :%s was there before the first start" % (pid, display))
                continue
            end = exits[owner[-1]["pid"]]["t"]
            overhang.append(last - end)
            if last > end + REAP_SLACK:
                violations.append("X server %d on :%s outlived start %d (client %d, exit %s) by %.2f s"
                                  % (pid, display, owner[-1]["n"], owner[-1]["pid"], exits[owner[-1]["pid"]]["code"],
                                     last - end))
        max_concurrent = max((len(xs) for _, xs in samples), default=0)
        log = self.broker.log_text()
        acquired = len(re.findall(r"uid=%d\(%s\) pid=\d+ display=:\d+ acquired" % (uid, USER), log))
        terminated = sum(int(n) for n in re.findall(r"ended: (\d+) process\(es\) terminated", log))
        killed = sum(int(n) for n in re.findall(r"terminated, (\d+) killed", log))
        h.measured("%d failing starts under the proxy's supervision in %.1f s (%d requests ended by the %d s "
                   "timeout, %d SIGKILLs): %d got a display; %d X servers seen in %d samples, at most %d at once"
                   % (len(starts), elapsed, len(timeouts), START_TIMEOUT, len(timeouts) + len(kills), acquired,
                      len(seen), len(samples), max_concurrent))
        h.measured("X server last seen relative to the end of its start: max %+.2f s; the broker terminated %d and "
                   "killed %d process(es) at lease ends"
                   % (max(overhang) if overhang else float("nan"), terminated, killed))
        self.assertFalse(violations, "\n".join(violations[:20]))
        self.assertGreaterEqual(acquired, STARTS - len(timeouts) - len(kills), "starts without a display")
        self.assertGreaterEqual(len(seen), STARTS // 4, "too few of the starts' X servers were seen to judge")
        self.assert_nothing_left(USER, DISPLAYS, what="after the end")

    # ------------------------------------------------------------------ 3

    def test_3_successful_start_reached_by_a_real_xpra_client(self):
        proc, events_path = self.driver("ok", "ok")
        try:
            h.wait_until(lambda: proc.poll() is not None or any(e["ev"] == "page" for e in self.read_events(events_path)),
                         120, 0.2, what="the desktop to become ready through the proxy")
            self.assertIsNone(proc.poll(), "the proxy driver exited")
            events = self.read_events(events_path)
            [rendered] = [e for e in events if e["ev"] == "rendered"]
            [ready] = [e for e in events if e["ev"] == "ready"]
            [page] = [e for e in events if e["ev"] == "page"]
            self.assertEqual(len([e for e in events if e["ev"] == "start"]), 1, "the start was not the first one")
            self.assertEqual(ready["unix_socket"], rendered["unix_socket"])
            self.assertEqual(page["status"], 200)
            self.assertTrue(page["xpra_client"], "not Xpra's HTML5 client page")

            [lease] = self.broker.leases(USER)
            [server] = h.xpra_servers_of_lease(lease)
            session = h.XpraSession(server)
            self.assertEqual(session.socket, rendered["unix_socket"], "Xpra does not listen on the proxy's socket")
            self.assertIsNone(session.port, "Xpra listens on TCP")
            self.assertEqual(session.display, lease["display"])
            info = session.client(USER, "info")
            self.assertEqual(info.returncode, 0, info.stdout[-2000:] + info.stderr[-2000:])
            self.assertRegex(info.stdout, r"(?m)=:%d$" % lease["display"])
            h.measured("successful start ready on {unix_socket}=%s after %.2f s; xpra info there as the user, "
                       "no password: exit 0" % (ready["unix_socket"], ready["seconds"]))
            private = rendered["environment"]["XDG_RUNTIME_DIR"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the notebook server stopping
        self.assertEqual(proc.wait(30), 0)
        self.assert_nothing_left(USER, DISPLAYS, what="after the end")
        self.assertFalse(os.path.exists(private), "the private dir with Xpra's socket outlived the server")

    # ------------------------------------------------------------------ 4

    def test_4_the_docs_say_what_is_shipped(self):
        """docs/jupyterhub.md against the files it names: the snippet, the
        rendered command, the files under /usr/share/xpra-broker/jupyter, the
        single-user app the tests run, and the proxy service's ports."""
        docs = h.read_text(os.path.join(self.run_.paths.source_dir, "docs", "jupyterhub.md"))
        dropin = self.run_.paths.dropin_dir
        snippet = h.read_text(os.path.join(dropin, "jupyter_server_config.py"))
        [block] = re.findall(r"Paste the snippet.*?```python\n(.*?)```", docs, re.S)
        # Both, run as Jupyter runs a config file, configure the same server
        # (the module from the source tree instead of /usr/share).
        from traitlets.config import Config

        def configured(text):
            c = Config()
            exec(compile(text.replace("/usr/share/xpra-broker/jupyter", dropin), "config", "exec"), {"c": c})
            return {name: server["command"] for name, server in c.ServerProxy.servers.items()}
        self.assertEqual(configured(block), configured(snippet))
        self.assertEqual(list(configured(block)), ["xprahtml5"])
        for name in set(re.findall(r"/usr/share/xpra-broker/jupyter/([\w.-]+)", docs)):
            self.assertTrue(os.path.exists(os.path.join(dropin, name)), "docs name %s, not shipped" % name)
        self.assertNotIn("pyproject.toml", os.listdir(dropin))
        self.assertIn('"JUPYTERHUB_SINGLEUSER_APP": "notebook.notebookapp.NotebookApp"', docs)
        self.assertIn('"JUPYTERHUB_SINGLEUSER_APP": "notebook.notebookapp.NotebookApp"',
                      h.read_text(os.path.join(self.run_.paths.tests_dir, "jhub_harness.py")))
        # The rendered command in the docs: the same options as setup_xpra()'s.
        [shown] = re.findall(r"returns what the proxy renders into:\n\n```\n(.*?)```", docs, re.S)
        sys.path.insert(0, dropin)
        from jupyter_xpra_broker_proxy import setup_xpra
        config = setup_xpra()
        command = config["command"]
        for option in command[command.index("start") + 1:]:
            option = re.sub(r"uid=\d+$", "uid=<uid>", option)
            self.assertIn(option, shown, "the docs' command lacks %s" % option)
        self.assertIn("unix_socket: <dir>/xpra.sock", shown)
        self.assertIn("path_info %s" % config["launcher_entry"]["path_info"], shown)
        # The proxy service's ports, in its unit, the hub's snippet and the docs.
        unit = h.read_text(os.path.join(dropin, "jupyterhub-proxy.service"))
        hub_snippet = h.read_text(os.path.join(dropin, "jupyterhub_config_proxy.py"))
        ports = dict(re.findall(r"(PROXY_API_PORT|HUB_PORT|PROXY_PORT)=(\d+)", unit))
        self.assertIn("http://127.0.0.1:%s\"" % ports["PROXY_API_PORT"], hub_snippet)
        self.assertIn("http://127.0.0.1:%s\"" % ports["HUB_PORT"], hub_snippet)
        self.assertIn("public %s, API\n   %s on localhost, the hub %s" % (ports["PROXY_PORT"], ports["PROXY_API_PORT"],
                                                                         ports["HUB_PORT"]), docs)
        for setting in ("should_start = False", "cleanup_servers = False"):
            self.assertIn(setting, hub_snippet)
            self.assertIn(setting.split(" =")[0], docs)
        r = h.run(["systemd-analyze", "verify", os.path.join(dropin, "jupyterhub-proxy.service")])
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    h.main(__name__)
