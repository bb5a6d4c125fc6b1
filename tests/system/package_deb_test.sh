#!/usr/bin/env bash
# Install, upgrade and purge of the .deb that system.package_deb_build made
# (fixture deb_packages), with the maintainer scripts debhelper wrote:
#  1. chrootless into a scratch root (dpkg --root, DPKG_ROOT): the postinst
#     creates user xpra-broker, group xpra and /run/xpra from nothing;
#  2. on this host: install N, start the installed broker as the unit would,
#     hold a lease, upgrade to N+1 with an edited conffile, restart the
#     broker as the upgrade's try-restart would, and find the lease and the
#     edit kept; then purge. Throughout, an admin's own
#     /etc/tmpfiles.d/xpra.conf is never replaced nor removed, Xpra's
#     tmpfiles rule is diverted while the broker is installed and back after
#     the purge, /run/xpra is the broker's and then as before, and the
#     socket unit is enabled and then gone.
# Displays 495-499 with a scratch X11 dir (no X server is started).
source "$(dirname "$0")/lib.sh"
require_root
command -v dpkg >/dev/null || skip "dpkg not installed (not a Debian host)"
make_scratch package-deb
DEB=$(ls "$DEB_AREA"/N/xpra-broker_*.deb 2>/dev/null || true)
DEB1=$(ls "$DEB_AREA"/N1/xpra-broker_*.deb 2>/dev/null || true)
[[ -f $DEB && -f $DEB1 ]] || { fail "no packages in $DEB_AREA: system.package_deb_build did not run"; finish; }
N=$(dpkg-deb -f "$DEB" Version)
N1=$(dpkg-deb -f "$DEB1" Version)
XPRA_RULE=/usr/lib/tmpfiles.d/xpra.conf
DIVERTED=/usr/lib/tmpfiles.d/xpra.conf.diverted-by-xpra-broker

# ---- 1. chrootless into a scratch root -------------------------------------
R=$SCRATCH/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" "$R/etc" "$R/run" \
  "$R/usr/lib/tmpfiles.d"
: >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
echo "root:x:0:0:root:/root:/bin/bash" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
: >"$R/etc/shadow"
: >"$R/etc/gshadow"
echo "d /run/xpra 1775 - xpra" >"$R$XPRA_RULE"  # as if Xpra were installed
dpkg_root() { dpkg --root="$R" --force-script-chrootless --force-depends --force-not-root "$@" >>"$SCRATCH/dpkg.log" 2>&1; }
check "scratch root: dpkg -i" dpkg_root -i "$DEB"
check "scratch root: postinst created user xpra-broker" grep -q '^xpra-broker:' "$R/etc/passwd"
check "scratch root: postinst created group xpra with member xpra-broker" grep -Eq '^xpra:x:[0-9]+:xpra-broker$' "$R/etc/group"
broker_uid=$(awk -F: '$1 == "xpra-broker" { print $3 }' "$R/etc/passwd")
xpra_gid=$(awk -F: '$1 == "xpra" { print $3 }' "$R/etc/group")
expect_eq "scratch root: /run/xpra (uid:gid mode)" "$broker_uid:$xpra_gid 755" "$(stat -c '%u:%g %a' "$R/run/xpra" 2>&1)"
expect_eq "scratch root: Xpra's rule diverted" "d /run/xpra 1775 - xpra" "$(cat "$R$DIVERTED" 2>&1)"
expect_eq "scratch root: in its place" "/dev/null" "$(readlink "$R$XPRA_RULE")"
check "scratch root: no setuid or setgid file installed" test -z "$(find "$R" -perm /6000 -print)"
check "scratch root: installed broker accepts its config" "$R/usr/sbin/xpra-brokerd" --config="$R/etc/xpra/broker.conf" --check-config
check "scratch root: dpkg -P" dpkg_root -P xpra-broker
check "scratch root: binaries removed" test ! -e "$R/usr/sbin/xpra-brokerd"
check "scratch root: conffile gone after purge" test ! -e "$R/etc/xpra/broker.conf"
expect_eq "scratch root: Xpra's rule back" "d /run/xpra 1775 - xpra" "$(cat "$R$XPRA_RULE" 2>&1)"
check "scratch root: no diversion left" test -z "$(dpkg-divert --admindir "$R/var/lib/dpkg" --list xpra-broker)"

# ---- 2. on this host -------------------------------------------------------
exec 9>/run/xpra-broker-package-test.lock
flock 9
if dpkg-query -W -f='${Status}' xpra-broker 2>/dev/null | grep -q installed; then
  fail "xpra-broker is already installed on this host; not touching it"
  finish
fi
# The host's own /run/xpra is not this test's to read: whatever a session
# left in it (an Xpra socket of root's, the demo's or an admin's) would make
# the installed broker refuse it as "not empty". It is moved aside for the
# test and an empty one of the same owner and mode made; host_cleanup
# puts the host's back, as it was, after the purge.
HOST_RUN_XPRA_SAVED=""
if [[ -e /run/xpra || -L /run/xpra ]]; then
  HOST_RUN_XPRA_SAVED=$(mktemp -u /run/xpra.xpb-package-test-saved.XXXXXX)
  mv -T /run/xpra "$HOST_RUN_XPRA_SAVED"
  read -r saved_mode saved_uid saved_gid < <(stat -c '%a %u %g' "$HOST_RUN_XPRA_SAVED")
  install -d -m "$saved_mode" -o "$saved_uid" -g "$saved_gid" /run/xpra
fi
restore_host_run_xpra() {
  [[ -n $HOST_RUN_XPRA_SAVED ]] || return 0
  rm -rf --one-file-system /run/xpra
  mv -T "$HOST_RUN_XPRA_SAVED" /run/xpra
  HOST_RUN_XPRA_SAVED=""
}
trap 'restore_host_run_xpra; cleanup' EXIT
run_before=$(stat -c '%U:%G %a' /run/xpra 2>/dev/null || echo absent)
group_before=$(getent group xpra || true)
rule_state() { stat -c '%F %U:%G %a' "$1" 2>&1; md5sum <"$1" 2>&1; }
rule_before=$(rule_state "$XPRA_RULE")
ADMIN_RULE=/etc/tmpfiles.d/xpra.conf
if [[ -e $ADMIN_RULE || -L $ADMIN_RULE ]]; then
  admin_rule_ours=no
else
  # An admin's own file of that name (a comment: it changes nothing).
  admin_rule_ours=yes
  mkdir -p /etc/tmpfiles.d
  printf '# the admin'"'"'s own rule (tests/system/package_deb_test.sh)\n' >"$ADMIN_RULE"
fi
admin_rule=$(fingerprint "$ADMIN_RULE")
host_cleanup() {
  [[ $admin_rule_ours == yes ]] && rm -f "$ADMIN_RULE"
  if dpkg-query -W -f='${Status}' xpra-broker 2>/dev/null | grep -q installed; then
    dpkg -P xpra-broker >>"$SCRATCH/dpkg.log" 2>&1 || true
  fi
  # sysusers' "m xpra-broker xpra" is not undone by dpkg (Debian leaves
  # system users alone); undo it so the host is as before.
  if [[ "$(getent group xpra || true)" != "$group_before" && "$group_before" != *xpra-broker* ]]; then
    gpasswd -d xpra-broker xpra >/dev/null 2>&1 || true
  fi
  [[ ${textfile_dir_ours:-no} == yes ]] && rmdir "$TEXTFILE_DIR" 2>/dev/null
  restore_host_run_xpra
  cleanup
}
trap host_cleanup EXIT

TEXTFILE_DIR=/var/lib/prometheus/node-exporter
textfile_dir_ours=no
if [[ ! -d $TEXTFILE_DIR ]]; then
  mkdir -p "$TEXTFILE_DIR"
  textfile_dir_ours=yes
fi
check "host: dpkg -i version $N" dpkg -i "$DEB"
expect_eq "host: installed version" "$N" "$(dpkg-query -W -f='${Version}' xpra-broker)"
check "host: user xpra-broker" getent passwd xpra-broker
check "host: xpra-broker is in group xpra" bash -c "id -Gn xpra-broker | tr ' ' '\n' | grep -qx xpra"
expect_eq "host: /run/xpra" "xpra-broker:xpra 755" "$(stat -c '%U:%G %a' /run/xpra)"
expect_eq "host: Xpra's rule diverted" "local diversion of $XPRA_RULE to $DIVERTED" \
  "$(dpkg-divert --list xpra-broker | sed 's/ by xpra-broker$//;s/^diversion/local diversion/')"
expect_eq "host: an empty rule in its place" /dev/null "$(readlink "$XPRA_RULE")"
expect_eq "host: the admin's $ADMIN_RULE untouched by the install" "$admin_rule" "$(fingerprint "$ADMIN_RULE")"
expect_eq "host: socket unit enabled" enabled "$(systemctl is-enabled xpra-brokerd.socket 2>&1)"
check "host: enablement recorded for purge" test -e /var/lib/systemd/deb-systemd-helper-enabled/xpra-brokerd.socket.dsh-also
# node-exporter's textfile directory exists (prometheus-node-exporter is
# installed for the metrics suite, or the test made it): the timer is enabled.
expect_eq "host: metrics timer enabled (node-exporter's textfile dir exists)" enabled \
  "$(systemctl is-enabled xpra-broker-metrics.timer 2>&1)"
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check "host: the PAM module beside Debian's (/lib/$triplet/security)" \
  test -f "/lib/$triplet/security/pam_xpra_broker.so" -a -f "/lib/$triplet/security/pam_unix.so"
check "host: the pam-auth-update profile installed" test -f /usr/share/pam-configs/xpra-broker
check "host: ... and not enabled by the install (Default: no)" \
  bash -c "! grep -q pam_xpra_broker /etc/pam.d/common-session"
check "host: the alert rules installed uncompressed where docs/monitoring.md says" \
  promtool check rules /usr/share/xpra-broker/prometheus/xpra-broker.rules.yml
check "host: docs/monitoring.md names that path" \
  grep -q /usr/share/xpra-broker/prometheus/xpra-broker.rules.yml /usr/share/doc/xpra-broker/monitoring.md
if [[ -d /run/systemd/system ]]; then
  check "host (systemd): socket listening" systemctl is-active xpra-brokerd.socket
  systemctl stop xpra-brokerd.socket xpra-brokerd.service  # the test starts the broker itself below
fi
# What Xpra's postinst runs on every Xpra install or upgrade.
systemd-tmpfiles --create xpra.conf >/dev/null 2>&1 || true
expect_eq "host: /run/xpra after Xpra's postinst (systemd-tmpfiles --create xpra.conf)" \
  "xpra-broker:xpra 755" "$(stat -c '%U:%G %a' /run/xpra)"

# The installed broker, as the unit starts it, on the default socket and
# runtime dir, with a lease of xpb-alice's.
BROKER_LOG=$SCRATCH/host-broker.log
SOCK=/run/xpra/broker.sock
start_installed_broker() {
  XPB_BROKERD=/usr/sbin/xpra-brokerd start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- \
    --displays=495-499 --x11-tmp-dir="$SCRATCH/x11" --reattach-grace-seconds=30
  wait_for_socket "$SOCK"
}
alice_lease() { runuser -u xpb-alice -- /usr/bin/xpra-request-display list 2>/dev/null | awk 'NR == 2 { print $1, $2, $3 }'; }
if start_installed_broker; then
  check_broker_credentials "$BROKER_PID" "host install:"
  check "host: no start-up warnings" bash -c "! grep -q 'warning:' '$BROKER_LOG'"
  runuser -u xpb-alice -- /usr/bin/xpra-request-display exec --purpose upgrade -- sleep 300 \
    >"$SCRATCH/holder.log" 2>&1 &
  HOLDER=$!
  STARTED_PIDS+=("$HOLDER")
  for _ in $(seq 50); do [[ -n $(alice_lease) ]] && break; sleep 0.1; done
  lease_before=$(alice_lease)
  check "host: alice holds a lease on the installed broker" test -n "$lease_before"
else
  fail "host: the installed broker did not start"
fi

# The admin edits the conffile; then version N+1 comes.
printf '\n# edited by the admin\nmax-leases-per-user = 6\n' >>/etc/xpra/broker.conf
conf_edited=$(md5sum </etc/xpra/broker.conf)
# ... and turns the metrics timer off: an upgrade must not turn it on again.
systemctl disable xpra-broker-metrics.timer >/dev/null 2>&1 || true
check "host: dpkg -i version $N1 (upgrade)" dpkg -i "$DEB1"
expect_eq "host: the admin's disabled metrics timer stays disabled after the upgrade" disabled \
  "$(systemctl is-enabled xpra-broker-metrics.timer 2>&1)"
expect_eq "host: installed version after the upgrade" "$N1" "$(dpkg-query -W -f='${Version}' xpra-broker)"
expect_eq "host: the admin's edit of /etc/xpra/broker.conf kept" "$conf_edited" "$(md5sum </etc/xpra/broker.conf)"
check "host: no .dpkg-dist or .dpkg-old beside it" bash -c "! ls /etc/xpra/broker.conf.dpkg-* 2>/dev/null | grep -q ."
expect_eq "host: the admin's $ADMIN_RULE untouched by the upgrade" "$admin_rule" "$(fingerprint "$ADMIN_RULE")"
expect_eq "host: Xpra's rule still diverted" /dev/null "$(readlink "$XPRA_RULE")"
expect_eq "host: socket unit still enabled" enabled "$(systemctl is-enabled xpra-brokerd.socket 2>&1)"
expect_eq "host: /run/xpra after the upgrade" "xpra-broker:xpra 755" "$(stat -c '%U:%G %a' /run/xpra)"

# The postinst's try-restart, as systemd would do it: stop, start the new binary.
if [[ -n ${lease_before:-} ]]; then
  stop_broker
  if start_installed_broker; then
    check "host: the upgraded broker accepts the edited config" grep -q "serving" "$BROKER_LOG"
    for _ in $(seq 80); do [[ $(alice_lease) == "$lease_before" ]] && break; sleep 0.1; done
    expect_eq "host: alice's lease kept across the upgrade and restart (id display state)" "$lease_before" "$(alice_lease)"
  else
    fail "host: the upgraded broker did not start"
  fi
  kill "$HOLDER" 2>/dev/null || true
  wait "$HOLDER" 2>/dev/null || true
  stop_broker
fi

check "host: dpkg -P" dpkg -P xpra-broker
check "host: binary removed" test ! -e /usr/sbin/xpra-brokerd
check "host: conffile removed by the purge" test ! -e /etc/xpra/broker.conf
expect_eq "host: the admin's $ADMIN_RULE untouched by the purge" "$admin_rule" "$(fingerprint "$ADMIN_RULE")"
expect_eq "host: Xpra's rule back as it was" "$rule_before" "$(rule_state "$XPRA_RULE")"
check "host: no diversion left" test -z "$(dpkg-divert --list xpra-broker)"
check "host: socket unit gone" bash -c "! systemctl is-enabled xpra-brokerd.socket >/dev/null 2>&1"
check "host: no enablement symlink left" test ! -e /etc/systemd/system/sockets.target.wants/xpra-brokerd.socket
check "host: the pam-auth-update profile gone" test ! -e /usr/share/pam-configs/xpra-broker
check "host: no pam_xpra_broker in the PAM stack" bash -c "! grep -q pam_xpra_broker /etc/pam.d/common-session"
check "host: no timer enablement left" test ! -e /etc/systemd/system/timers.target.wants/xpra-broker-metrics.timer
check "host: the postinst's note is purged" test ! -e /var/lib/xpra-broker
check "host: the broker's lock and journal are gone from /run/xpra" \
  test ! -e /run/xpra/broker.lock -a ! -e /run/xpra/leases.journal
# The postrm hands /run/xpra back to root and applies xpra.conf again, which
# is the admin's $ADMIN_RULE while it exists (it overrides Xpra's), so only
# the owner is compared here; with the test's own admin file gone, Xpra's
# rule must give back exactly the /run/xpra of before.
expect_eq "host: /run/xpra's owner after purge" "${run_before%% *}" "$(stat -c '%U:%G' /run/xpra 2>/dev/null || echo absent)"
if [[ $admin_rule_ours == yes ]]; then
  rm -f "$ADMIN_RULE"
  admin_rule_ours=no
  systemd-tmpfiles --create xpra.conf >/dev/null 2>&1 || true
  expect_eq "host: /run/xpra after purge with Xpra's rule (as before the test)" "$run_before" \
    "$(stat -c '%U:%G %a' /run/xpra 2>/dev/null || echo absent)"
fi
check "host: user xpra-broker kept (Debian leaves system users)" getent passwd xpra-broker
rmdir "/run/xpra/$(uid_of xpb-alice)" 2>/dev/null || true
log "--- dpkg said:"; cat "$SCRATCH/dpkg.log" >&2
finish
