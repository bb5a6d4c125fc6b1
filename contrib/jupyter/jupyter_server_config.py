# The Xpra desktop of jupyter-server-proxy, through xpra-broker.
#
# Paste into the single-user server's config: for the classic notebook
# (Debian 12's python3-notebook, the single-user app with a launcher there)
# /etc/jupyter/jupyter_notebook_config.py, for jupyter_server
# /etc/jupyter/jupyter_server_config.py. Nothing needs to be installed with
# pip: the line below finds the module where `cmake --install` (or the
# package) put it. Do not enable jupyter-xprahtml5-proxy as well: both are
# called "xprahtml5".
#
# Xpra listens on a Unix socket in a private directory of the user and lets
# in only the user's own processes (SO_PEERCRED); no password or key exists,
# so none can end up in a URL or a log.
#
# See docs/jupyterhub.md for what runs as whom and how to read a failing
# user's logs.
import sys

# Where `cmake --install` puts the module.
sys.path.insert(0, "/usr/share/xpra-broker/jupyter")

from jupyter_xpra_broker_proxy import setup_xpra  # noqa: E402

c.ServerProxy.servers = {  # noqa: F821 (c is the config object Jupyter passes in)
    "xprahtml5": setup_xpra(),
    # Xpra starts `start` (xterm) and not the start commands of the host's
    # /etc/xpra (Debian's Xsession); to run those too:
    #   "xprahtml5": setup_xpra(host_start=True),
}
