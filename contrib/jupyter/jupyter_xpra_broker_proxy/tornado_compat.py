"""Websockets over a Unix socket in jupyter-server-proxy 4.x on tornado 6.2.

jupyter-server-proxy (4.0 to 4.1.2 at least) opens a proxied websocket on a
server's `unix_socket` with `WebSocketClientConnection(..., resolver=
UnixResolver(path))` (jupyter_server_proxy/websocket.py, pingable_ws_connect;
"resolver= parameter requires tornado >= 6.3"). Debian 12 ships tornado 6.2,
whose WebSocketClientConnection has no such parameter: the HTTP requests of
the desktop go through (SimpleAsyncHTTPClient takes a resolver), the websocket
fails with a TypeError, and the HTML5 client never connects.

`enable()` gives tornado 6.2's WebSocketClientConnection the parameter, doing
what tornado 6.3 does with it (websocket.py: `self.tcp_client =
TCPClient(resolver=resolver)`). The connection's coroutine first uses
`tcp_client` on the IOLoop's next turn, after __init__ has returned, so
replacing it at the end of __init__ is in time. On tornado >= 6.3, or when
tornado is not importable, it does nothing. Idempotent.
"""

import inspect

_PATCHED_MARK = "_xpra_broker_unix_resolver"


def needed(connection_class=None):
    """True when `connection_class` (tornado's WebSocketClientConnection) lacks `resolver=`."""
    if connection_class is None:
        try:
            from tornado.websocket import WebSocketClientConnection as connection_class
        except ImportError:
            return False
    if getattr(connection_class.__init__, _PATCHED_MARK, False):
        return False
    return "resolver" not in inspect.signature(connection_class.__init__).parameters


def enable():
    """Adds `resolver=` to tornado's WebSocketClientConnection if it lacks it; returns whether it did."""
    if not needed():
        return False
    from tornado.tcpclient import TCPClient
    from tornado.websocket import WebSocketClientConnection

    original_init = WebSocketClientConnection.__init__

    def __init__(self, *args, resolver=None, **kwargs):
        original_init(self, *args, **kwargs)
        if resolver is not None:
            default_client = self.tcp_client
            self.tcp_client = TCPClient(resolver=resolver)
            default_client.close()

    setattr(__init__, _PATCHED_MARK, True)
    WebSocketClientConnection.__init__ = __init__
    return True
