"""What jupyter-server-proxy 4.1.2 does with a server's configuration, for the tests.

jupyter-server-proxy is not packaged in Debian 12 (nor simpervisor), so the
suite reproduces the part of it the desktop depends on: how a server's
`command` and `environment` are rendered, how the process is started,
supervised, restarted and killed, and (server_proxy_extension.py) how HTTP
requests and websockets are proxied to its port or Unix socket. 4.1.2 is the
newest release that Debian 12's jupyter_server 1.23.3 allows (4.2 needs
jupyter_server >= 1.24). The code follows these sources line by line (names
kept, so the two can be read side by side):

jupyter-server-proxy v4.1.2, commit ca21c38c9dee85703df94cf4f3222e0ce04fc047:
  jupyter_server_proxy/handlers.py
    97-600    ProxyHandler: prepare (authentication; a websocket upgrade
              without a user is a 403), proxy (HTTP: hop-by-hop headers
              dropped, SimpleAsyncHTTPClient with UnixResolver for a Unix
              socket, X-Forwarded-Context, the answer's headers copied but
              Content-Length/Transfer-Encoding/Connection), proxy_open
              (websocket: pingable_ws_connect with resolver=UnixResolver,
              "requires tornado >= 6.3"), on_message, on_ping, on_close,
              check_xsrf_cookie (deferred to the app), select_subprotocol
              -> server_proxy_extension.py
    692-697   process_args: {"port", "unix_socket" ("" if none), "base_url"}
    699-711   _render_template: str -> value.format(**args); lists and dicts
              (keys too) recursively; anything else raises ValueError
    713-717   _realize_rendered_template: a callable is called with the args
              it asks for (utils.call_with_asked_args), then rendered
    719-728   proxy: mappath (callable with `path`, or a dict), HTTP only
    733-734   open: the websocket gets no mappath
    780-810   port (0 with a unix_socket; requested, else bind ("", 0) and
              close) and unix_socket (True: mkdtemp + "socket"; a string:
              that path)
    812-813   get_cmd
    834-850   _http_ready_func: aiohttp GET of http://localhost (through a
              UnixConnector) or http://localhost:{port}; any response
              counts, a connection error does not
    852-900   ensure_process: under a lock, if no "proc" in state: render the
              command, env = os.environ + rendered environment, start a
              SupervisedProcess, wait ready(); not ready -> kill() and HTTP
              500; on any error "proc" is removed from state, so the next
              request starts it again
    902-908   proxy and open of a supervised server: ensure_process first
  jupyter_server_proxy/websocket.py 13-56 PingableWSClientConnection,
              pingable_ws_connect; 60-106 WebSocketHandlerMixin
  jupyter_server_proxy/unixsock.py UnixResolver
  jupyter_server_proxy/api.py 8-35 ServersInfoHandler (server-proxy/servers-info)
  jupyter_server_proxy/static/tree.js: the classic notebook's launcher
              entry ("New" menu); tests/jupyterhub/nbextension/tree.js is
              a verbatim copy
  jupyter_server_proxy/config.py
    66-93     the per-server handler class: get_env renders `environment`,
              get_timeout returns `timeout`, proxy_base is the name
  jupyter_server_proxy/utils.py 1-30  call_with_asked_args
simpervisor, commit 24730d8bf9574e1adfb755804882acedd3696855 (1.0):
  simpervisor/process.py
    192-199   _handle_signal: SIGINT/SIGTERM of the server go to the child
    201-242   start: asyncio.create_subprocess_exec, watcher task
    244-260   _restart_process_if_needed: the child exited non-zero (or
              always_restart) and was not killed -> start it again, at once
    262-308   _signal_and_wait / kill: SIGKILL to the child only, then reap
    310-360   ready: ready_func until ready_timeout, waits doubling from
              10 ms and clamped to the deadline
  simpervisor/atexitasync.py: the server's SIGINT/SIGTERM handler calls each
    running child's _handle_signal, then sys.exit(0)

Where it differs: the readiness check speaks HTTP over asyncio's own
connections instead of aiohttp (not installed on CI; the same requests, the
same "any answer" rule); the handlers are a classic-notebook (notebook 6.4)
server extension on IPythonHandler, where 4.1.2's are jupyter_server
JupyterHandlers loaded into the notebook through jupyter_server's
compatibility; the rewrite_response hooks, the /proxy/<port> handlers, the
icon handler, request_headers_override, entry points and _record_activity
(the idle-culling timestamp) are left out (the drop-in and the tests use
none of them); the launcher's servers-info lists the configured servers
from c.ServerProxy.servers directly rather than through ServerProcess
tuples; no Windows.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from tempfile import mkdtemp

# ------------------------------------------------------------------ utils.py


def call_with_asked_args(callback, args):
    """jupyter_server_proxy/utils.py: call callback with only the args it asks for."""
    asked_arg_names = callback.__code__.co_varnames[: callback.__code__.co_argcount]
    asked_arg_values = []
    missing_args = []
    for asked_arg_name in asked_arg_names:
        if asked_arg_name in args:
            asked_arg_values.append(args[asked_arg_name])
        else:
            missing_args.append(asked_arg_name)
    if missing_args:
        raise TypeError(
            "{}() missing required positional argument: {}".format(
                callback.__code__.co_name, ", ".join(missing_args)
            )
        )
    return callback(*asked_arg_values)


# ------------------------------------------------------------------ atexitasync.py

_handlers = []
_signal_handler_set = False
# The notebook-server extension turns this on, as importing simpervisor would;
# a test process that supervises directly keeps its own signal handling.
propagate_signals = False


def enable_signal_propagation():
    global propagate_signals
    propagate_signals = True


def _add_handler(handler):
    global _signal_handler_set
    if not propagate_signals:
        return
    if not _signal_handler_set:
        signal.signal(signal.SIGINT, _handle_signal)
        signal.signal(signal.SIGTERM, _handle_signal)
        _signal_handler_set = True
    _handlers.append(handler)


def _remove_handler(handler):
    if handler in _handlers:
        _handlers.remove(handler)


def _handle_signal(signum, *args):
    for handler in _handlers:
        handler(signum)
    sys.exit(0)


# ------------------------------------------------------------------ simpervisor/process.py


class KilledProcessError(Exception):
    pass


class SupervisedProcess:
    """simpervisor.SupervisedProcess on POSIX. `on_start(pid)` and
    `on_exit(pid, code)` are the tests' observers; they change nothing."""

    def __init__(self, name, *args, always_restart=False, ready_func=None, ready_timeout=5, log=None,
                 on_start=None, on_exit=None, **kwargs):
        self.always_restart = always_restart
        self.name = name
        self._proc_args = args
        self._proc_kwargs = kwargs
        self.ready_func = ready_func
        self.ready_timeout = ready_timeout
        self.proc = None
        self.log = log or logging.getLogger("simpervisor")
        self.running = False
        self._killed = False
        self._proc_lock = asyncio.Lock()
        self._on_start = on_start
        self._on_exit = on_exit

    def _handle_signal(self, signum):
        self.proc.send_signal(signum)
        self._killed = True

    async def start(self):
        async with self._proc_lock:
            if self.running:
                return
            if self._killed:
                raise KilledProcessError(f"Process {self.name} has already been explicitly killed")
            self.proc = await asyncio.create_subprocess_exec(*self._proc_args, **self._proc_kwargs)
            if self._on_start:
                self._on_start(self.proc.pid)
            self._killed = False
            self.running = True
            self._restart_process_future = asyncio.ensure_future(self._restart_process_if_needed())
            _add_handler(self._handle_signal)

    async def _restart_process_if_needed(self):
        retcode = await self.proc.wait()
        _remove_handler(self._handle_signal)
        if self._on_exit:
            self._on_exit(self.proc.pid, retcode)
        self.running = False
        if (not self._killed) and (self.always_restart or retcode != 0):
            await self.start()

    async def _signal_and_wait(self, signum):
        async with self._proc_lock:
            self.proc.send_signal(signum)
            self._killed = True
            self._restart_process_future.cancel()
            retcode = await self.proc.wait()
            if self._on_exit:
                self._on_exit(self.proc.pid, retcode)
            self.running = False
            _remove_handler(self._handle_signal)

    async def terminate(self):
        if self._killed:
            raise KilledProcessError(f"Process {self.name} has already been explicitly killed")
        return await self._signal_and_wait(signal.SIGTERM)

    async def kill(self):
        if self._killed:
            raise KilledProcessError(f"Process {self.name} has already been explicitly killed")
        return await self._signal_and_wait(signal.SIGKILL)

    async def ready(self):
        start_time = time.time()
        wait_time = 0.01
        while True:
            if time.time() - start_time > self.ready_timeout:
                return False
            if self._killed or not self.proc:
                return False
            try:
                is_ready = await asyncio.wait_for(self.ready_func(self), 5)
            except asyncio.TimeoutError:
                is_ready = False
            if is_ready:
                return True
            await asyncio.sleep(wait_time)
            wait_time = 2 * wait_time
            if (time.time() + wait_time) > (start_time + self.ready_timeout):
                wait_time = (start_time + self.ready_timeout) - time.time() - 0.01

    @property
    def pid(self):
        return self.proc.pid


# ------------------------------------------------------------------ handlers.py


class ProcessNotReady(Exception):
    """Where SuperviseAndProxyHandler raises web.HTTPError(500, "could not start ... in time")."""


class SupervisedServer:
    """One entry of c.ServerProxy.servers, as its SuperviseAndProxyHandler
    subclass treats it. `state` is shared by all requests to the server."""

    def __init__(self, name, config, base_url="/", state=None, log=None, on_start=None, on_exit=None):
        self.name = name
        self.command = config.get("command", [])
        self.environment = config.get("environment", {})
        self.timeout = float(config.get("timeout", 5.0))
        self.requested_port = int(config.get("port", 0))
        self.requested_unix_socket = config.get("unix_socket", False) or False
        self.mappath = config.get("mappath", {})
        self.base_url = base_url
        self.state = {} if state is None else state
        if "proc_lock" not in self.state:
            self.state["proc_lock"] = asyncio.Lock()
        self.log = log or logging.getLogger("server-proxy")
        self._on_start = on_start
        self._on_exit = on_exit

    @property
    def process_args(self):
        return {
            "port": self.port,
            "unix_socket": (self.unix_socket or ""),
            "base_url": self.base_url,
        }

    def _render_template(self, value):
        args = self.process_args
        if type(value) is str:
            return value.format(**args)
        elif type(value) is list:
            return [self._render_template(v) for v in value]
        elif type(value) is dict:
            return {self._render_template(k): self._render_template(v) for k, v in value.items()}
        else:
            raise ValueError(f"Value of unrecognized type {type(value)}")

    def _realize_rendered_template(self, attribute):
        if callable(attribute):
            attribute = call_with_asked_args(attribute, self.process_args)
        return self._render_template(attribute)

    def map_path(self, path):
        if not path.startswith("/"):
            path = "/" + path
        if self.mappath:
            if callable(self.mappath):
                path = call_with_asked_args(self.mappath, {"path": path})
            else:
                path = self.mappath.get(path, path)
        return path

    @property
    def port(self):
        if self.requested_unix_socket:  # unix_socket has priority over port
            return 0
        if "port" not in self.state:
            if self.requested_port:
                self.state["port"] = self.requested_port
            else:
                sock = socket.socket()
                sock.bind(("", self.requested_port))
                self.state["port"] = sock.getsockname()[1]
                sock.close()
        return self.state["port"]

    @property
    def unix_socket(self):
        if "unix_socket" not in self.state:
            if self.requested_unix_socket is True:
                sock_dir = mkdtemp(prefix="jupyter-server-proxy-")
                sock_path = os.path.join(sock_dir, "socket")
            elif self.requested_unix_socket:
                sock_path = self.requested_unix_socket
            else:
                sock_path = None
            self.state["unix_socket"] = sock_path
        return self.state["unix_socket"]

    def get_cmd(self):
        return self._realize_rendered_template(self.command)

    def get_env(self):
        return self._realize_rendered_template(self.environment)

    def get_timeout(self):
        return self.timeout

    async def _http_ready_func(self, p):
        # aiohttp's GET of http://localhost (UnixConnector) or
        # http://localhost:{port}: any HTTP answer is ready, a refused or
        # dropped connection (ClientConnectionError) is not.
        try:
            if self.unix_socket is not None:
                reader, writer = await asyncio.open_unix_connection(self.unix_socket)
            else:
                reader, writer = await asyncio.open_connection("localhost", self.port)
        except OSError:
            return False
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await writer.drain()
            status_line = await reader.readline()
            return status_line.startswith(b"HTTP/")
        except OSError:
            return False
        finally:
            writer.close()

    async def ensure_process(self):
        async with self.state["proc_lock"]:
            if "proc" not in self.state:
                cmd = self.get_cmd()
                if not cmd:
                    self.state["proc"] = "process not managed by jupyter-server-proxy"
                    return
                server_env = os.environ.copy()
                server_env.update(self.get_env())
                timeout = self.get_timeout()
                proc = SupervisedProcess(
                    self.name,
                    *cmd,
                    env=server_env,
                    ready_func=self._http_ready_func,
                    ready_timeout=timeout,
                    log=self.log,
                    on_start=self._on_start,
                    on_exit=self._on_exit,
                )
                self.state["proc"] = proc
                try:
                    await proc.start()
                    is_ready = await proc.ready()
                    if not is_ready:
                        await proc.kill()
                        raise ProcessNotReady(f"could not start {self.name} in time")
                except:  # noqa: E722 (as upstream: any error forgets the process)
                    del self.state["proc"]
                    raise
