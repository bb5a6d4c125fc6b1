#!/usr/bin/env bash
# `cmake --install --component pam --prefix P` must put pam_xpra_broker.so in
# P/PAM_MODULE_DIR, and with P=/usr that must be the directory where this
# distribution's own PAM modules (pam_unix.so) live, i.e. where libpam looks.
# Usage: install_location_test.sh BUILD_DIR PAM_MODULE_DIR
set -euo pipefail
build_dir=$1 module_dir=$2
tmp=$(mktemp -d /tmp/xpb-pam-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

case $module_dir in
  /*) echo "PAM_MODULE_DIR=$module_dir is absolute: the prefix is not honoured"; exit 1 ;;
esac
cmake --install "$build_dir" --component pam --prefix "$tmp/prefix" >"$tmp/install.log"
installed=$tmp/prefix/$module_dir/pam_xpra_broker.so
[ -f "$installed" ] || { echo "FAIL: not installed at $installed"; cat "$tmp/install.log"; exit 1; }
other=$(find "$tmp/prefix" -type f | grep -v "/pam_xpra_broker.so$" || true)
[ -z "$other" ] || { echo "FAIL: the pam component installs more than the module: $other"; exit 1; }

# With --prefix /usr the module would land in /usr/$module_dir; libpam finds
# modules there if pam_unix.so is there (on merged-/usr systems /lib is /usr/lib).
distro_dir=
for d in "/usr/$module_dir" "/$module_dir"; do
  if [ -f "$d/pam_unix.so" ]; then distro_dir=$d && break; fi
done
[ -n "$distro_dir" ] || { echo "FAIL: no pam_unix.so in /usr/$module_dir or /$module_dir: that is not where libpam looks"; exit 1; }
echo "ok: installs to <prefix>/$module_dir; with prefix /usr that is $distro_dir, beside pam_unix.so"
