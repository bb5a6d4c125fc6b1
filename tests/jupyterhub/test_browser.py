#!/usr/bin/python3
"""JupyterHub in a real browser: Debian's chromium (headless, driven by
Debian's chromium-driver and python3-selenium) logs in through the hub's
form, opens the desktop from the classic notebook's "New" menu (the launcher
entry of jupyter-server-proxy's nbextension, tests/jupyterhub/nbextension),
waits for the HTML5 client's xterm window, types a command that creates a
file on the host, and checks the file; screenshots go to the test's output
dir. The hub's proxy runs as its own service (contrib/jupyter/jupyterhub-
proxy.service, ExecStart as shipped): the hub is restarted with the tab
open, and a second command typed into the same tab must still arrive. A
second user's desktop cannot start (Xpra's socket dir is not writable) and
its request ends in the proxy's start timeout (HTTP 500). Then every log
(the hub's with the notebook servers' output, the proxy's, the broker's) is
searched for every secret of the run: the users' passwords, the hub's
cookie secret, the proxy's token, the test's API token, each notebook
server's API token and the browser's cookies; none may be there. Stopping
the servers leaves no process of either user at all.

Displays 1090-1099. Users xpb-carol and xpb-dave, which no other suite
runs as: "no process of the user" counts every process of theirs.
"""

import os
import re
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request

import jhub_harness as h

USER = "xpb-carol"
FAILING = "xpb-dave"
DISPLAYS = range(1090, 1100)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The drop-in's start timeout for the failing user (90 s by default).
FAILING_TIMEOUT = 8


def output_dir():
    """Where the screenshots go: the build tree's tests/jupyterhub/output/browser."""
    path = os.path.join(os.environ.get("XPB_OUTPUT_DIR") or tempfile.gettempdir(), "browser")
    os.makedirs(path, exist_ok=True)
    return path


class BrowserTest(h.HubTestCase):
    RUN_NAME = "browser"

    @classmethod
    def prepare(cls):
        for program in (CHROMIUM, CHROMEDRIVER):
            if not os.access(program, os.X_OK):
                raise AssertionError("%s is missing; run scripts/install-deps.sh" % program)
        cls.broker, cls.passwords, cls.deployment, cls.hub = h.start_proxy_hub(
            cls.run_, [USER, FAILING], DISPLAYS, failing=[FAILING], failing_timeout=FAILING_TIMEOUT,
            separate_proxy=True, log_in=False)
        cls.proof = os.path.join("/home", USER, "xpb-browser-" + secrets.token_hex(4))
        cls.run_.cleanups.callback(lambda: [os.unlink(cls.proof + "-%d" % n) for n in range(1, 5)
                                            if os.path.lexists(cls.proof + "-%d" % n)])
        # What Xpra starts outside the run's mark (Debian's dbus-launch gives
        # its dbus-daemon a clean environment, with only DISPLAY of the
        # session) and a failed run can leave: at the end, the processes of
        # the two users on this test's displays are ended.
        users = [h.uid_of(u) for u in (USER, FAILING)]
        displays = {":%d" % d for d in DISPLAYS}
        cls.run_.cleanups.callback(lambda: h.kill_processes(
            [p for uid in users for p in h.processes(uid) if h.environ_of(p.pid).get("DISPLAY") in displays],
            "process of a test user on the test's displays"))
        cls.out = output_dir()
        cls.secrets = {"password of " + u: p for u, p in cls.passwords.items()}
        cls.secrets.update({"the test's API token": cls.hub.token, "the proxy's auth token": cls.hub.proxy_token})
        cls.driver = cls.start_browser()

    @classmethod
    def start_browser(cls):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=cls.run_.scratch)  # fresh, removed with it
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run",
                         "--user-data-dir=" + profile, "--window-size=1280,900"):
            options.add_argument(argument)
        # A runtime dir of its own in the scratch dir: without one, chromium's
        # sound library makes /tmp/pulse-* and leaves it there.
        runtime = tempfile.mkdtemp(prefix="chromium-runtime-", dir=cls.run_.scratch)
        # The mark reaches chromedriver and chromium, so the run's cleanup
        # ends them whatever happens.
        service = Service(CHROMEDRIVER, log_path=cls.run_.path("chromedriver.log"),
                          env=cls.run_.environment(HOME=cls.run_.scratch, XDG_RUNTIME_DIR=runtime))
        driver = webdriver.Chrome(service=service, options=options)
        cls.run_.cleanups.callback(driver.quit)
        driver.set_page_load_timeout(120)
        return driver

    # -- the browser

    def wait_for(self, script, timeout, what):
        """Polls a JavaScript expression in the current tab until it is truthy."""
        return h.wait_until(lambda: self.driver.execute_script("return " + script), timeout, 0.2, what=what)

    def screenshot(self, name):
        path = os.path.join(self.out, name)
        self.driver.save_screenshot(path)
        h.log("screenshot " + path)
        return path

    def type_into_desktop(self, text):
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        window = self.driver.find_element(By.CSS_SELECTOR, "#screen .window canvas")
        ActionChains(self.driver).move_to_element(window).click().pause(0.5).send_keys(text).perform()

    def open_desktop(self, hub):
        """As a user: the hub's login form, the spawn, the tree's New ->
        Xpra Desktop, the HTML5 client's first window in the new tab.
        Returns the tree's window handle and the seconds from submitting the
        form to the window."""
        from selenium.webdriver.common.by import By

        d = self.driver
        d.get(hub.url + "/hub/login")
        d.find_element(By.ID, "username_input").send_keys(USER)
        d.find_element(By.ID, "password_input").send_keys(self.passwords[USER])
        logged_in = time.monotonic()
        d.find_element(By.ID, "login_submit").click()
        # The hub spawns the server and sends the browser to its file tree.
        h.wait_until(lambda: "/user/%s/tree" % USER in d.current_url, 120, 0.2,
                     what="the notebook's tree page (at %s)" % d.current_url)
        self.wait_for("document.getElementById('new-dropdown-button')", 60, "the tree's New button")
        tree = d.current_window_handle
        # The launcher: New -> Xpra Desktop, a new tab, as a user opens it.
        d.find_element(By.ID, "new-dropdown-button").click()
        entry = h.wait_until(lambda: [e for e in d.find_elements(By.LINK_TEXT, "Xpra Desktop") if e.is_displayed()],
                             60, 0.2, what="the launcher entry Xpra Desktop in the New menu")[0]
        self.assertEqual(entry.get_attribute("href"), hub.url + "/user/%s/xprahtml5/" % USER, "the launcher's URL")
        entry.click()
        h.wait_until(lambda: len(d.window_handles) == 2, 30, 0.2, what="the desktop's tab")
        d.switch_to.window([w for w in d.window_handles if w != tree][0])
        self.wait_for("document.querySelector('#screen .window canvas')", 120,
                      "the HTML5 client's first window (at %s)" % d.current_url)
        seconds = time.monotonic() - logged_in
        self.assertNotIn("?", d.current_url, "the desktop's URL has a query string")
        return tree, seconds

    def test_1_browser_login_launcher_desktop_and_a_hub_restart(self):
        d = self.driver
        uid = h.uid_of(USER)
        self.assertEqual(h.processes(uid), [], "%s has processes before the test" % USER)
        tree, window_seconds = self.open_desktop(self.hub)
        h.measured("browser: login submitted to the HTML5 client's first window: %.1f s" % window_seconds)
        time.sleep(1)  # xterm draws its prompt

        [lease] = self.broker.leases(USER)
        [server] = h.xpra_servers_of_lease(lease)
        self.type_into_desktop("touch %s-1\n" % self.proof)
        h.wait_until(lambda: os.path.exists(self.proof + "-1"), 30, 0.2,
                     what="the typed command to create %s-1" % self.proof)
        self.assertEqual(os.lstat(self.proof + "-1").st_uid, uid, "the file is not the user's")
        self.screenshot("desktop.png")

        # The servers' API tokens, while they run.
        self.note_server_tokens()

        # The hub restarts (what `systemctl restart jupyterhub` does) while
        # the tab is open; its proxy is a service of its own and stays.
        proxy_pid = self.hub.proxy_proc.pid
        restarted = time.monotonic()
        self.hub.restart()
        h.measured("browser: hub restarted (SIGTERM, new hub answering) in %.1f s, the desktop tab open"
                   % (time.monotonic() - restarted))
        self.assertIsNone(self.hub.proxy_proc.poll(), "the proxy service died with the hub")
        self.assertEqual(self.hub.proxy_proc.pid, proxy_pid)
        self.assertEqual([l["lease"] for l in self.broker.leases(USER)], [lease["lease"]], "the lease changed")
        self.assertTrue(h.pid_alive(server.pid), "Xpra did not survive the hub's restart")
        typed = time.monotonic()
        self.type_into_desktop("touch %s-2\n" % self.proof)
        h.wait_until(lambda: os.path.exists(self.proof + "-2"), 30, 0.2,
                     what="a command typed into the open tab after the hub's restart to create %s-2" % self.proof)
        h.measured("browser: a command typed into the tab that was open across the hub's restart arrived "
                   "(%.1f s after typing)" % (time.monotonic() - typed))
        self.screenshot("desktop-after-hub-restart.png")
        # The browser's cookies: the desktop's path, the tree's and the hub's.
        cookies = {c["name"]: c["value"] for c in d.get_cookies()}
        d.switch_to.window(tree)
        cookies.update({c["name"]: c["value"] for c in d.get_cookies()})
        d.get(self.hub.url + "/hub/home")
        cookies.update({c["name"]: c["value"] for c in d.get_cookies()})
        type(self).browser_cookies = cookies

        # The failing user: the proxy's start timeout, HTTP 500.
        opener, _, _ = self.hub.login(FAILING, self.passwords[FAILING])
        with opener.open(self.hub.url + "/hub/spawn", timeout=120) as r:
            self.assertEqual(r.status, 200, r.geturl())
        self.hub.wait_ready(FAILING)
        self.note_server_tokens()
        request = urllib.request.Request(self.hub.url + self.deployment.desktop_path(FAILING),
                                         headers={"Accept": "text/html"})
        timed = time.monotonic()
        with self.assertRaises(urllib.error.HTTPError) as failed:
            opener.open(request, timeout=FAILING_TIMEOUT + 60)
        self.assertEqual(failed.exception.code, 500)
        self.assertIn("could not start xprahtml5 in time", failed.exception.read().decode(errors="replace"))
        h.measured("browser: %s's desktop request ended after %.1f s with the proxy's start timeout (HTTP 500)"
                   % (FAILING, time.monotonic() - timed))

        # Stop: nothing of either user is left, not a single process.
        for user in (USER, FAILING):
            stopped = time.monotonic()
            self.hub.stop_server(user)
            left = {}

            def nobody_left():
                left["processes"] = h.processes(h.uid_of(user))
                left["leases"] = self.broker.leases(user)
                return not left["processes"] and not left["leases"]
            try:
                h.wait_until(nobody_left, 20, 0.05)
            except AssertionError:
                self.fail("20 s after the stop of %s's server, left: %r" % (user, left))
            h.measured("browser: %s: 0 processes and 0 leases left %.2f s after the REST stop returned"
                       % (user, time.monotonic() - stopped))

    def note_server_tokens(self):
        for p in h.processes():
            env = h.environ_of(p.pid)
            if env.get(h.MARK_VARIABLE) == self.run_.mark and env.get("JUPYTERHUB_API_TOKEN"):
                self.secrets["API token of %s's server" % env.get("JUPYTERHUB_USER")] = env["JUPYTERHUB_API_TOKEN"]

    def test_2_no_secret_in_any_log(self):
        self.secrets["the hub's cookie secret"] = open(os.path.join(self.hub.dir, "cookie_secret")).read().strip()
        for name, value in getattr(self, "browser_cookies", {}).items():
            # Not a credential, and JupyterHub 3.0's single-user auth logs it
            # itself at every login ("Logged-in user {... 'session_id': ...}"):
            # the hub ties logout to it; the signed login cookies and the
            # tokens are what let anyone in.
            if name != "jupyterhub-session-id":
                self.secrets["the browser's cookie " + name] = value
        for expected in ("API token of %s's server" % USER, "API token of %s's server" % FAILING,
                         "the browser's cookie jupyterhub-user-%s" % USER, "the browser's cookie jupyterhub-hub-login"):
            self.assertIn(expected, self.secrets)
        logs = {"hub (with the notebook servers' and Xpra's output)": self.hub.log_path,
                "proxy service": self.hub.proxy_log_path, "broker": self.broker.log_path}
        texts = {name: h.read_text(path) for name, path in logs.items()}
        # The logs are the right ones: the forced start timeout, the
        # launcher's URL and the websocket are in them.
        hub_log = texts["hub (with the notebook servers' and Xpra's output)"]
        self.assertIn("could not start xprahtml5 in time", hub_log)
        self.assertIn("/user/%s/xprahtml5/" % USER, hub_log)
        self.assertIn("Websocket connection established", hub_log)
        found = []
        for name, text in texts.items():
            for what, value in self.secrets.items():
                self.assertGreaterEqual(len(value), 16, what)
                if value in text:
                    found.append("%s in the %s log" % (what, name))
            # And no URL with credentials, whoever made them.
            for m in re.finditer(r"[?&](password|key|token)=[^&\s\"']+", text):
                found.append("%r in the %s log" % (m.group(0)[:40], name))
        h.measured("secret scan: %d secrets (%s) in %d logs (%s, %d bytes): %d found"
                   % (len(self.secrets), ", ".join(sorted(self.secrets)), len(texts), ", ".join(sorted(texts)),
                      sum(len(t) for t in texts.values()), len(found)))
        self.assertEqual(found, [])

    def test_3_control_a_hub_with_its_own_proxy_freezes_the_open_tab(self):
        """The control of test_1's restart (issue 22, item 3): the same
        deployment, but the hub starts its own proxy (JupyterHub's default;
        only cleanup_servers is off, so the servers stay): a restart of the
        hub replaces that proxy, and a command typed into the open tab
        afterwards never arrives, although the session is still there."""
        d = self.driver
        for handle in d.window_handles[1:]:
            d.switch_to.window(handle)
            d.close()
        d.switch_to.window(d.window_handles[0])
        d.delete_all_cookies()  # the first hub's, for the same host
        hub = h.Hub(self.run_, self.broker, self.hub.pam_service, [USER, FAILING], self.deployment.spawner_config(),
                    name="hub-control", extra_config="c.JupyterHub.cleanup_servers = False\n")
        hub.start()
        self.open_desktop(hub)
        time.sleep(1)
        [lease] = self.broker.leases(USER)
        [server] = h.xpra_servers_of_lease(lease)
        self.type_into_desktop("touch %s-3\n" % self.proof)
        h.wait_until(lambda: os.path.exists(self.proof + "-3"), 30, 0.2, what="the command before the restart")
        proxy_pid = hub.proxy_pid()
        hub.restart()
        self.assertNotEqual(hub.proxy_pid(), proxy_pid, "the restarted hub kept its proxy")
        self.assertEqual([l["lease"] for l in self.broker.leases(USER)], [lease["lease"]], "the lease changed")
        self.assertTrue(h.pid_alive(server.pid), "Xpra did not survive the hub's restart")
        self.type_into_desktop("touch %s-4\n" % self.proof)
        time.sleep(10)
        self.screenshot("control-after-hub-restart.png")
        self.assertFalse(os.path.exists(self.proof + "-4"),
                         "a command typed into the tab arrived although the hub replaced its proxy: "
                         "the control does not show what the separate proxy prevents")
        h.measured("browser (control): hub with its own proxy restarted, the open tab's command did not arrive "
                   "within 10 s; the session (lease, Xpra) still ran")
        hub.stop_server(USER)


if __name__ == "__main__":
    h.main(__name__)
