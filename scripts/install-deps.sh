#!/usr/bin/env bash
# Installs what building, the demo and the tests need, from Debian 12's
# archive. Does nothing for packages already present; needs root to install.
set -euo pipefail

build_packages=(cmake gcc g++ binutils make pkg-config libboost-dev libcap-dev libprotobuf-dev protobuf-compiler
                libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libsystemd-dev zlib1g-dev libpam0g-dev libgtest-dev libgmock-dev
                # The fuzzers (scripts/fuzz.sh): clang, libFuzzer and the sanitizer
                # runtimes (only recommended by clang, so named here).
                clang libfuzzer-14-dev libclang-rt-14-dev)
# Real components the tests and the demo run: X servers, Xpra, a PAM driver,
# systemd-analyze for the unit files; dpkg-dev, debhelper and lintian to
# build and check the .deb (dpkg-buildpackage), rpm to build the .rpm; man-db
# and groff-base to check the man pages; bash-completion for the completions.
runtime_packages=(xvfb x11-utils xpra pamtester libcap2-bin procps util-linux passwd systemd dpkg-dev file strace rpm
                  debhelper lintian man-db groff-base bash-completion
                  # The metrics suite: the real textfile collector it scrapes, and
                  # promtool (in prometheus) for the exposition and the alert rules.
                  # On a host with systemd as PID 1 their packages start
                  # node-exporter (:9100) and Prometheus (:9090) on localhost.
                  prometheus-node-exporter prometheus
                  # tests/jupyterhub: the hub, its proxy, the classic notebook as the
                  # users' single-user server, Python 3 from Debian; Xpra's server
                  # needs PIL for any client connection (only recommended by xpra),
                  # and the desktop starts xterm as upstream's proxy does.
                  jupyterhub node-configurable-http-proxy python3-notebook python3 python3-pil xterm
                  # Debian's default Xpra config runs dbus-launch (dbus-x11) and Xsession:
                  # the containment tests run Xpra as a real host has it.
                  dbus-x11
                  # jupyterhub.browser: a real browser (headless) on the desktop, driven
                  # through WebDriver.
                  chromium chromium-driver python3-selenium)

missing=()
for p in "${build_packages[@]}" "${runtime_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
