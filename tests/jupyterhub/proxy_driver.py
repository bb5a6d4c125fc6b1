#!/usr/bin/python3
"""Runs the drop-in's server the way jupyter-server-proxy runs it, as the
user, outside any notebook server: test_proxy_semantics.py starts this as
the test user and watches the host meanwhile.

  proxy_driver.py EVENTS failing STARTS TIMEOUT SOCKET_DIR
      setup_xpra(extra_xpra_args=["--socket-dir=SOCKET_DIR"], timeout=TIMEOUT):
      requests (ensure_process) one after another until STARTS processes
      have been started and have exited; each request ends after TIMEOUT
      seconds with SIGKILL of the running process (the proxy's "could not
      start in time"), in between the supervisor restarts every exit at once.
  proxy_driver.py EVENTS ok
      setup_xpra(): one request that must become ready; then it waits for
      SIGTERM, which it handles as jupyter-server-proxy's process does
      (simpervisor's atexitasync: the signal goes to the child, then exit).

EVENTS gets one JSON object per line, each with "t" (time.monotonic(), the
same clock as the test's). The supervised processes' own output goes to
this program's stdout and stderr.
"""

import asyncio
import json
import sys
import time

import server_proxy_emulation as jsp
from jupyter_xpra_broker_proxy import setup_xpra

events = None


def emit(**event):
    event["t"] = time.monotonic()
    events.write(json.dumps(event) + "\n")
    events.flush()


def rendered(server):
    # Exactly what ensure_process will run: the proxy renders at each start.
    emit(ev="rendered", command=server.get_cmd(), environment=server.get_env(), port=server.port,
         unix_socket=server.unix_socket,
         timeout=server.get_timeout())


async def failing(starts, timeout, socket_dir):
    config = setup_xpra(extra_xpra_args=["--socket-dir=" + socket_dir], timeout=timeout)
    counts = {"started": 0, "exited": 0}
    enough = asyncio.Event()

    def on_start(pid):
        counts["started"] += 1
        emit(ev="start", pid=pid, n=counts["started"])

    def on_exit(pid, code):
        counts["exited"] += 1
        emit(ev="exit", pid=pid, code=code, n=counts["exited"])
        if counts["exited"] >= starts:
            enough.set()

    state = {}
    server = jsp.SupervisedServer("xprahtml5", config, base_url="/user/test/", state=state, on_start=on_start,
                                  on_exit=on_exit)
    rendered(server)
    requests = 0
    while not enough.is_set():
        requests += 1
        emit(ev="request", n=requests)
        request = asyncio.ensure_future(server.ensure_process())
        stopper = asyncio.ensure_future(enough.wait())
        await asyncio.wait({request, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not request.done():
            # Enough starts: end the running one as the proxy ends a start
            # that is not ready in time (SIGKILL), then let the request end.
            proc = state.get("proc")
            if isinstance(proc, jsp.SupervisedProcess) and proc.running:
                emit(ev="kill", pid=proc.pid, why="enough starts")
                await proc.kill()
        stopper.cancel()
        try:
            await request
            emit(ev="ready", unexpected=True)
            return 1
        except jsp.ProcessNotReady:
            emit(ev="timeout", n=requests)
        except jsp.KilledProcessError:
            emit(ev="stopped", n=requests)
    emit(ev="done", started=counts["started"], exited=counts["exited"], requests=requests)
    return 0


async def http_get_unix(socket_path, path):
    """GET path on the Unix socket (the proxy's SimpleAsyncHTTPClient with a
    UnixResolver does the same); returns (body text, status)."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace"), int(head.split()[1])


async def ok():
    config = setup_xpra()
    jsp.enable_signal_propagation()  # as importing simpervisor does in the proxy
    state = {}
    server = jsp.SupervisedServer("xprahtml5", config, base_url="/user/test/", state=state,
                                  on_start=lambda pid: emit(ev="start", pid=pid),
                                  on_exit=lambda pid, code: emit(ev="exit", pid=pid, code=code))
    rendered(server)
    started = time.monotonic()
    await server.ensure_process()
    emit(ev="ready", unix_socket=server.unix_socket, pid=state["proc"].pid, seconds=time.monotonic() - started)
    # What the proxy sends to Xpra for the desktop's first page.
    path = server.map_path("/")
    page, status = await http_get_unix(server.unix_socket, path)
    emit(ev="page", status=status, path=path, xpra_client="xpra websockets client" in page)
    await asyncio.Event().wait()  # until SIGTERM


def main():
    global events
    events = open(sys.argv[1], "a", buffering=1)
    mode = sys.argv[2]
    if mode == "failing":
        return asyncio.run(failing(int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
    if mode == "ok":
        return asyncio.run(ok())
    print("unknown mode " + mode, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
