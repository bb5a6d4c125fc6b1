# The hub's side of jupyterhub-proxy.service: use the proxy that service
# runs instead of starting (and, at each hub start, replacing) one. Add to
# /etc/jupyterhub/jupyterhub_config.py; the token is the one in
# /etc/jupyterhub/proxy.env, which the hub's own unit reads as well
# (EnvironmentFile=/etc/jupyterhub/proxy.env), since configurable-http-proxy
# and JupyterHub both take CONFIGPROXY_AUTH_TOKEN from the environment.
c.ConfigurableHTTPProxy.should_start = False  # noqa: F821 (c is JupyterHub's config object)
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"  # noqa: F821
c.JupyterHub.hub_bind_url = "http://127.0.0.1:8081"  # noqa: F821
# Servers keep running while the hub is down or restarting; the default
# (True) stops every user's server when the hub stops.
c.JupyterHub.cleanup_servers = False  # noqa: F821
