# The Xpra desktop of jupyter-server-proxy, through xpra-broker.
#
# Paste into the single-user server's config (jupyter_server_config.py for
# jupyter_server, jupyter_notebook_config.py for the classic notebook), for
# example /etc/jupyter/jupyter_server_config.py, or install this directory as
# a package (`pip install /usr/share/xpra-broker/jupyter`), which registers the
# same server as a jupyter-server-proxy entry point and needs no config at all.
# Either way, do not enable jupyter-xprahtml5-proxy as well: both are called
# "xprahtml5".
#
# See docs/jupyterhub.md for what runs as whom and how to read a failing
# user's logs.
import sys

# Where `cmake --install` puts the module; drop this line if it is installed
# as a package.
sys.path.insert(0, "/usr/share/xpra-broker/jupyter")

from jupyter_xpra_broker_proxy import setup_xpra  # noqa: E402

c.ServerProxy.servers = {  # noqa: F821 (c is the config object Jupyter passes in)
    "xprahtml5": setup_xpra(),
    # Upstream bound Xpra's TCP socket on every interface; the proxy only
    # needs localhost. To get upstream's exposure back:
    #   "xprahtml5": setup_xpra(bind_host="0.0.0.0"),
    # Xpra starts `start` (xterm) and not the start commands of the host's
    # /etc/xpra (Debian's Xsession); to run those too:
    #   "xprahtml5": setup_xpra(host_start=True),
}
