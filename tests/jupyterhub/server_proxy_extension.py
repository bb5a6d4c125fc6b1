"""A classic-notebook server extension that serves c.ServerProxy.servers the
way jupyter-server-proxy does, through server_proxy_emulation (which says
which upstream lines each part follows). The hub tests load it into Debian's
jupyterhub-singleuser (notebook 6.4), so the users' servers run the
drop-in's configuration exactly as an admin pastes it.

GET {base_url}{name}/{path}: ensure_process (start, supervise, restart, kill
after the timeout: HTTP 500), then the mapped path is fetched from
http://localhost:{port} and returned. Authenticated like every notebook
handler (the hub's cookie or a token with access to the server).
"""

import server_proxy_emulation as jsp
from notebook.base.handlers import IPythonHandler
from notebook.utils import url_path_join
from tornado import httpclient, web


class SuperviseAndProxyHandler(IPythonHandler):
    def initialize(self, name, server_config, state):
        self.server = jsp.SupervisedServer(name, server_config, base_url=self.base_url, state=state, log=self.log)

    @web.authenticated
    async def get(self, path):
        try:
            await self.server.ensure_process()
        except jsp.ProcessNotReady as e:
            raise web.HTTPError(500, str(e))
        client = httpclient.AsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch("http://localhost:%d%s" % (self.server.port, self.server.map_path(path)),
                                          raise_error=False, request_timeout=60)
        finally:
            client.close()
        if response.code == 599:
            raise web.HTTPError(599, "%s: %s" % (self.server.name, response.error))
        self.set_status(response.code)
        content_type = response.headers.get("Content-Type")
        if content_type:
            self.set_header("Content-Type", content_type)
        self.finish(response.body or b"")


def load_jupyter_server_extension(nbapp):
    jsp.enable_signal_propagation()
    servers = nbapp.config.ServerProxy.get("servers", {})
    base_url = nbapp.web_app.settings["base_url"]
    handlers = []
    for name, server_config in servers.items():
        handlers.append((url_path_join(base_url, name, r"(.*)"), SuperviseAndProxyHandler,
                         dict(name=name, server_config=server_config, state={})))
        nbapp.log.info("server-proxy emulation: %s at %s", name, url_path_join(base_url, name, ""))
    nbapp.web_app.add_handlers(".*$", handlers)
