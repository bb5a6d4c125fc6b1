"""A classic-notebook server extension that serves c.ServerProxy.servers the
way jupyter-server-proxy 4.1.2 does, over server_proxy_emulation (which
lists the upstream lines each part follows and where it differs). The hub
tests load it into Debian's jupyterhub-singleuser (notebook 6.4), so the
users' servers run the drop-in's configuration exactly as an admin pastes it.

{base_url}{name}{path}: ensure_process (start, supervise, restart, kill
after the timeout: HTTP 500), then a GET (and any other method) is fetched
from the server's port or Unix socket with the mapped path, and a websocket
upgrade is relayed both ways, unmapped. {base_url}server-proxy/servers-info
lists the launcher entries for the "New" menu (tests/jupyterhub/nbextension/
tree.js, upstream's static/tree.js). Authenticated like every notebook
handler (the hub's cookie or a token with access to the server); a websocket
without a user gets a 403.
"""

import inspect

import server_proxy_emulation as jsp
from notebook.base.handlers import IPythonHandler
from notebook.utils import url_path_join
from tornado import httpclient, httputil, web, websocket
from tornado.netutil import Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient


# ------------------------------------------------------------------ unixsock.py


class UnixResolver(Resolver):
    def initialize(self, socket_path):
        self.socket_path = socket_path

    async def resolve(self, host, port, *args, **kwargs):
        import socket
        return [(socket.AF_UNIX, self.socket_path)]


# ------------------------------------------------------------------ websocket.py 13-106


class PingableWSClientConnection(websocket.WebSocketClientConnection):
    def __init__(self, **kwargs):
        if "on_ping_callback" in kwargs:
            self._on_ping_callback = kwargs["on_ping_callback"]
            del kwargs["on_ping_callback"]
        super().__init__(**kwargs)

    def on_ping(self, data):
        if self._on_ping_callback:
            self._on_ping_callback(data)


def pingable_ws_connect(request=None, on_message_callback=None, on_ping_callback=None, subprotocols=None,
                        resolver=None):
    request.headers = httputil.HTTPHeaders(request.headers)
    request = httpclient._RequestProxy(request, httpclient.HTTPRequest._DEFAULTS)
    # "resolver= parameter requires tornado >= 6.3. Only pass it if needed."
    # On Debian 12's tornado 6.2 this raises TypeError unless the drop-in's
    # tornado_compat has added the parameter, as with the real 4.1.2.
    kwargs = {"resolver": resolver} if resolver else {}
    conn = PingableWSClientConnection(
        request=request,
        compression_options={},
        on_message_callback=on_message_callback,
        on_ping_callback=on_ping_callback,
        max_message_size=getattr(websocket, "_default_max_message_size", 10 * 1024 * 1024),
        subprotocols=subprotocols,
        **kwargs,
    )
    return conn.connect_future


async def _ensure_async(value):
    if inspect.isawaitable(value):
        return await value
    return value


class WebSocketHandlerMixin(websocket.WebSocketHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bases = inspect.getmro(type(self))
        nextparent = bases[bases.index(WebSocketHandlerMixin) + 1]

        def wrapper(method):
            def undisallow(*args2, **kwargs2):
                getattr(nextparent, method)(self, *args2, **kwargs2)
            return undisallow

        for method in ["write", "redirect", "set_header", "set_cookie", "set_status", "flush", "finish"]:
            setattr(self, method, wrapper(method))
        nextparent.__init__(self, *args, **kwargs)

    async def get(self, *args, **kwargs):
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            return await self.http_get(*args, **kwargs)
        else:
            await _ensure_async(super().get(*args, **kwargs))


# ------------------------------------------------------------------ handlers.py


HOP_BY_HOP_HEADERS = ["Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Connection", "Trailer",
                      "Upgrade", "Proxy-Authorization", "Proxy-Authenticate"]


class SuperviseAndProxyHandler(WebSocketHandlerMixin, IPythonHandler):
    """ProxyHandler + NamedLocalProxyHandler + SuperviseAndProxyHandler of
    4.1.2 for one configured server (config.py's _make_supervisedproxy_handler)."""

    def initialize(self, name, server_config, state):
        self.server = jsp.SupervisedServer(name, server_config, base_url=self.base_url, state=state, log=self.log)
        self.proxy_base = name
        self.absolute_url = server_config.get("absolute_url", False)
        self._requested_subprotocols = None

    @property
    def unix_socket(self):
        return self.server.unix_socket

    def check_origin(self, origin=None):
        return IPythonHandler.check_origin(self, origin)

    async def prepare(self, *args, **kwargs):
        prepared = super().prepare(*args, **kwargs)
        if prepared is not None:
            await prepared
        if self.request.method == "GET" and self.request.headers.get("Upgrade", "").lower() == "websocket":
            if not self.current_user:
                raise web.HTTPError(403)
        else:
            web.authenticated(lambda request_handler: None)(self)

    async def _ensure_process(self):
        try:
            await self.server.ensure_process()
        except jsp.ProcessNotReady as e:
            raise web.HTTPError(500, str(e))

    # -- HTTP (NamedLocalProxyHandler.proxy 719-728, then ProxyHandler.proxy 317-463)

    async def http_get(self, path):
        return await self.proxy(path)

    async def post(self, path):
        return await self.proxy(path)

    async def put(self, path):
        return await self.proxy(path)

    async def delete(self, path):
        return await self.proxy(path)

    async def head(self, path):
        return await self.proxy(path)

    async def patch(self, path):
        return await self.proxy(path)

    async def options(self, path):
        return await self.proxy(path)

    def _context_path(self):
        return url_path_join(self.base_url, self.proxy_base)

    def get_client_uri(self, protocol, proxied_path):
        from urllib.parse import quote
        client_path = url_path_join(self._context_path(), proxied_path) if self.absolute_url else proxied_path
        if not client_path.startswith("/"):
            client_path = "/" + client_path
        client_path = quote(client_path, safe=":/?#[]@!$&'()*+,;=-._~")
        client_uri = "{protocol}://{host}:{port}{path}".format(protocol=protocol, host="localhost",
                                                               port=self.server.port, path=client_path)
        if self.request.query:
            client_uri += "?" + self.request.query
        return client_uri

    def proxy_request_headers(self):
        return self.request.headers.copy()

    async def proxy(self, path):
        await self._ensure_process()
        path = self.server.map_path(path)
        for header in HOP_BY_HOP_HEADERS:
            if header in self.request.headers:
                del self.request.headers[header]
        body = self.request.body
        if not body:
            body = b"" if self.request.method in {"POST", "PUT"} else None
        if self.unix_socket is not None:
            client = SimpleAsyncHTTPClient(force_instance=True, resolver=UnixResolver(self.unix_socket))
        else:
            client = httpclient.AsyncHTTPClient()
        headers = self.proxy_request_headers()
        if not self.absolute_url:
            headers["X-Forwarded-Context"] = headers["X-ProxyContextPath"] = headers["X-Forwarded-Prefix"] = \
                self._context_path()
        req = httpclient.HTTPRequest(self.get_client_uri("http", path), method=self.request.method, body=body,
                                     decompress_response=False, headers=headers, follow_redirects=False,
                                     connect_timeout=250.0, request_timeout=300.0)
        try:
            response = await client.fetch(req, raise_error=False)
        except httpclient.HTTPError as err:
            if err.code == 599:
                self.set_status(599)
                self.write(str(err))
                return
            raise
        if response.error and type(response.error) is not httpclient.HTTPError:
            self.set_status(500)
            self.write(str(response.error))
            return
        self.set_status(response.code, response.reason)
        self._headers = httputil.HTTPHeaders()
        for header, v in response.headers.get_all():
            if header not in ("Content-Length", "Transfer-Encoding", "Connection"):
                self.add_header(header, v)
        if response.body:
            self.write(response.body)

    # -- websocket (SuperviseAndProxyHandler.open 906-908, ProxyHandler.proxy_open 465-544)

    async def open(self, path):
        await self._ensure_process()
        if not path.startswith("/"):
            path = "/" + path
        resolver = UnixResolver(self.unix_socket) if self.unix_socket is not None else None
        client_uri = self.get_client_uri("ws", path)
        headers = self.proxy_request_headers()

        def message_cb(message):
            if message is None:
                self.close()
            else:
                self.write_message(message, binary=isinstance(message, bytes))

        def ping_cb(data):
            self.ping(data)

        self.log.info(f"Trying to establish websocket connection to {client_uri}")
        request = httpclient.HTTPRequest(url=client_uri, headers=headers)
        self.ws = await pingable_ws_connect(request=request, on_message_callback=message_cb,
                                            on_ping_callback=ping_cb, subprotocols=self._requested_subprotocols,
                                            resolver=resolver)
        self.log.info(f"Websocket connection established to {client_uri}")

    def on_message(self, message):
        if hasattr(self, "ws"):
            self.ws.write_message(message, binary=isinstance(message, bytes))

    def on_ping(self, data):
        if hasattr(self, "ws"):
            self.ws.protocol.write_ping(data)

    def on_close(self):
        if hasattr(self, "ws"):
            self.ws.close()

    def check_xsrf_cookie(self):
        """Deferred to the proxied app, as upstream."""

    def select_subprotocol(self, subprotocols):
        self._requested_subprotocols = subprotocols if subprotocols else None
        return subprotocols[0] if subprotocols else None


class AddSlashHandler(IPythonHandler):
    """handlers.py 87-94: {base_url}{name} -> {base_url}{name}/."""

    @web.authenticated
    def get(self, *args):
        src = httputil.urlparse(self.request.uri)
        dest = src._replace(path=src.path + "/")
        self.redirect(httputil.urlunparse(dest))


# ------------------------------------------------------------------ api.py 8-35


class ServersInfoHandler(IPythonHandler):
    def initialize(self, servers):
        self.servers = servers

    @web.authenticated
    def get(self):
        data = []
        for name, config in self.servers.items():
            entry = config.get("launcher_entry", {})
            data.append({
                "name": name,
                "launcher_entry": {"enabled": entry.get("enabled", True), "title": entry.get("title", name),
                                   "path_info": entry.get("path_info", name + "/")},
                "new_browser_tab": config.get("new_browser_tab", True),
            })
        self.write({"server_processes": data})


def load_jupyter_server_extension(nbapp):
    jsp.enable_signal_propagation()
    servers = nbapp.config.ServerProxy.get("servers", {})
    base_url = nbapp.web_app.settings["base_url"]
    handlers = []
    for name, server_config in servers.items():
        handlers.append((url_path_join(base_url, name, r"(.*)"), SuperviseAndProxyHandler,
                         dict(name=name, server_config=server_config, state={})))
        handlers.append((url_path_join(base_url, name), AddSlashHandler))
        nbapp.log.info("server-proxy emulation: %s at %s", name, url_path_join(base_url, name, ""))
    handlers.append((url_path_join(base_url, "server-proxy/servers-info"), ServersInfoHandler,
                     dict(servers=servers)))
    nbapp.web_app.add_handlers(".*$", handlers)
