#!/usr/bin/env bash
# CPack builds a .deb that has no setuid or setgid file, depends on the
# Debian 12 libraries it links, and installs, removes and purges cleanly.
# The install runs chrootless into a scratch root (dpkg --root with
# --force-script-chrootless; the maintainer scripts honour DPKG_ROOT), so the
# host is not touched. With XPB_TEST_REAL_DPKG=1 it is also installed on the
# host and removed again (not by default: other suites use /run/xpra).
# Packages are built from a /usr-configured tree (see ensure_package_build).
source "$(dirname "$0")/lib.sh"
require_root
command -v dpkg-deb >/dev/null || skip "dpkg-deb not installed (not a Debian host)"
command -v cpack >/dev/null || skip "cpack not installed"
make_scratch package-deb

ensure_package_build
(cd "$PKG_BUILD" && cpack -G DEB -B "$SCRATCH/out") >"$SCRATCH/cpack.log" 2>&1 ||
  { cat "$SCRATCH/cpack.log" >&2; fail "cpack -G DEB failed"; finish; }
debs=("$SCRATCH"/out/*.deb)
expect_eq "number of .deb files" 1 "${#debs[@]}"
DEB=${debs[0]}
log "      built $(basename "$DEB")"

# Contents: tar-style modes; an s/S in the owner or group execute place is a
# setuid/setgid bit.
dpkg-deb -c "$DEB" >"$SCRATCH/contents"
check "no setuid or setgid file in the package" bash -c "! awk '{print \$1}' '$SCRATCH/contents' | grep -q '^...[sS]\|^......[sS]'"
for f in ./usr/sbin/xpra-brokerd ./usr/bin/xpra-request-display ./usr/lib/sysusers.d/xpra-broker.conf \
  ./usr/lib/tmpfiles.d/xpra-broker.conf ./etc/xpra/broker.conf; do
  check "package contains $f" grep -q " $f\$" "$SCRATCH/contents"
done
check "package contains the units" bash -c "grep -q '/systemd/system/xpra-brokerd.service\$' '$SCRATCH/contents' && grep -q '/systemd/system/xpra-brokerd.socket\$' '$SCRATCH/contents'"
check "package masks Xpra's tmpfiles rule" grep -q " ./etc/tmpfiles.d/xpra.conf -> /dev/null\$" "$SCRATCH/contents"

depends=$(dpkg-deb -f "$DEB" Depends)
log "      Depends: $depends"
for lib in libc6 libcap2 libsystemd0 libstdc++6; do
  check "Depends names $lib" grep -q "$lib" <<<"$depends"
done
dpkg-deb -e "$DEB" "$SCRATCH/control"
expect_eq "conffiles" "/etc/xpra/broker.conf" "$(cat "$SCRATCH/control/conffiles")"
for s in postinst prerm postrm; do
  check "$s is executable and valid sh" bash -c "test -x '$SCRATCH/control/$s' && sh -n '$SCRATCH/control/$s'"
done
dpkg-deb -x "$DEB" "$SCRATCH/x"
expect_eq "packaged unit's ExecStart" "ExecStart=/usr/sbin/xpra-brokerd" \
  "$(grep -h '^ExecStart=' "$SCRATCH"/x/*/systemd/system/xpra-brokerd.service "$SCRATCH"/x/usr/lib/systemd/system/xpra-brokerd.service 2>/dev/null | head -1)"

# Chrootless install into a scratch root.
R=$SCRATCH/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" "$R/etc" "$R/run"
: >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
echo "root:x:0:0:root:/root:/bin/bash" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
: >"$R/etc/shadow"
: >"$R/etc/gshadow"
dpkg_root() { dpkg --root="$R" --force-script-chrootless --force-depends --force-not-root "$@" >>"$SCRATCH/dpkg.log" 2>&1; }
check "dpkg -i into a scratch root" dpkg_root -i "$DEB"
check "postinst created user xpra-broker" grep -q '^xpra-broker:' "$R/etc/passwd"
check "postinst created group xpra with member xpra-broker" grep -Eq '^xpra:x:[0-9]+:xpra-broker$' "$R/etc/group"
broker_uid=$(awk -F: '$1 == "xpra-broker" { print $3 }' "$R/etc/passwd")
xpra_gid=$(awk -F: '$1 == "xpra" { print $3 }' "$R/etc/group")
expect_eq "postinst made /run/xpra (uid:gid mode)" "$broker_uid:$xpra_gid 755" "$(stat -c '%u:%g %a' "$R/run/xpra" 2>&1)"
check "no setuid or setgid file installed" test -z "$(find "$R" -perm /6000 -print)"
check "nothing enabled (systemd is not PID 1 / chrootless)" test ! -e "$R/etc/systemd/system/sockets.target.wants/xpra-brokerd.socket"
check "installed broker runs" "$R/usr/sbin/xpra-brokerd" --config="$R/etc/xpra/broker.conf" --check-config
check "dpkg -r" dpkg_root -r xpra-broker
check "binaries removed" test ! -e "$R/usr/sbin/xpra-brokerd"
check "mask of Xpra's rule removed with the package" test ! -L "$R/etc/tmpfiles.d/xpra.conf"
check "conffile kept after remove" test -f "$R/etc/xpra/broker.conf"
check "dpkg -P" dpkg_root -P xpra-broker
check "conffile gone after purge" test ! -e "$R/etc/xpra/broker.conf"
log "--- dpkg said:"; cat "$SCRATCH/dpkg.log" >&2

# Optionally on the host itself.
if [[ "${XPB_TEST_REAL_DPKG:-0}" == 1 ]]; then
  if dpkg-query -W -f='${Status}' xpra-broker 2>/dev/null | grep -q installed; then
    fail "xpra-broker is already installed on this host; not touching it"
    finish
  fi
  run_before=$(stat -c '%U:%G %a' /run/xpra 2>/dev/null || echo absent)
  group_before=$(getent group xpra || true)
  check "dpkg -i on the host" dpkg -i "$DEB"
  expect_eq "host /run/xpra after install" "xpra-broker:xpra 755" "$(stat -c '%U:%G %a' /run/xpra)"
  check "host: installed broker --version" /usr/sbin/xpra-brokerd --version
  # Start the installed broker as the unit would, on the default socket and
  # runtime dir (displays 495-499 and a scratch X11 dir, to stay out of the
  # way of other suites), and ask it for its status with the installed client.
  BROKER_LOG=$SCRATCH/host-broker.log
  SOCK=/run/xpra/broker.sock
  XPB_BROKERD=/usr/sbin/xpra-brokerd start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- \
    --displays=495-499 --x11-tmp-dir="$SCRATCH/x11"
  if wait_for_socket "$SOCK"; then
    check_broker_credentials "$BROKER_PID" "host install:"
    check "host: installed client reaches it on the default socket" /usr/bin/xpra-request-display status
    check "host: no start-up warnings" bash -c "! grep -q 'warning:' '$BROKER_LOG'"
  else
    cat "$BROKER_LOG" >&2
    fail "host: the installed broker did not start"
  fi
  stop_broker
  if [[ -d /run/systemd/system ]]; then
    check "host (systemd): socket enabled" systemctl is-enabled xpra-brokerd.socket
  else
    check "host (no systemd as PID 1): nothing enabled" test ! -e /etc/systemd/system/sockets.target.wants/xpra-brokerd.socket
  fi
  check "dpkg -P on the host" dpkg -P xpra-broker
  check "host: binary removed" test ! -e /usr/sbin/xpra-brokerd
  check "host: the broker's lock file is gone from /run/xpra" test ! -e /run/xpra/broker.lock
  expect_eq "host /run/xpra after purge (Xpra's rule again)" "$run_before" "$(stat -c '%U:%G %a' /run/xpra 2>/dev/null || echo absent)"
  # sysusers' "m xpra-broker xpra" is not undone by dpkg (Debian leaves
  # system users alone); undo it here so the host is as before.
  if [[ "$(getent group xpra || true)" != "$group_before" && "$group_before" != *xpra-broker* ]]; then
    gpasswd -d xpra-broker xpra >/dev/null 2>&1 || true
  fi
  expect_eq "host group xpra as before" "$group_before" "$(getent group xpra || true)"
fi
finish
