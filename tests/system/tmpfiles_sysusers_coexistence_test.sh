#!/usr/bin/env bash
# How the broker's sysusers.d/tmpfiles.d files fit with Xpra's own packaging
# (/usr/lib/sysusers.d/xpra.conf "g xpra -" and /usr/lib/tmpfiles.d/xpra.conf
# "d /run/xpra 1775 - xpra"), run for real with systemd-sysusers and
# systemd-tmpfiles on scratch roots:
#   - group xpra is created once, whichever package comes first, and an
#     existing group xpra (Xpra's postinst uses addgroup) keeps its gid;
#   - with the broker's .deb, /run/xpra ends up 0755 xpra-broker:xpra at
#     boot, and Xpra's postinst (`systemd-tmpfiles --create xpra.conf`) no
#     longer puts it back to 1775: the .deb diverts Xpra's xpra.conf in
#     /usr/lib and puts an empty one in its place, never touching /etc;
#   - an admin's own /etc/tmpfiles.d/xpra.conf still overrides both;
#   - without the diversion, Xpra's rule would make it group-writable again.
source "$(dirname "$0")/lib.sh"
require_root
command -v systemd-tmpfiles >/dev/null || skip "systemd-tmpfiles not installed"
command -v systemd-sysusers >/dev/null || skip "systemd-sysusers not installed"
make_scratch coexistence
PKG=$XPB_SOURCE_DIR/packaging

# Xpra's files: the host's if Xpra is installed, else their upstream content.
xpra_tmpfiles=$SCRATCH/xpra-tmpfiles.conf
xpra_sysusers=$SCRATCH/xpra-sysusers.conf
if [[ -f /usr/lib/tmpfiles.d/xpra.conf ]]; then cp /usr/lib/tmpfiles.d/xpra.conf "$xpra_tmpfiles"
else echo "d /run/xpra 1775 - xpra" >"$xpra_tmpfiles"; fi
if [[ -f /usr/lib/sysusers.d/xpra.conf ]]; then cp /usr/lib/sysusers.d/xpra.conf "$xpra_sysusers"
else echo "g xpra -" >"$xpra_sysusers"; fi

new_root() {  # new_root NAME [xpra-group-exists]: a minimal root, Xpra's files installed
  local r=$SCRATCH/$1
  mkdir -p "$r/etc/tmpfiles.d" "$r/usr/lib/tmpfiles.d" "$r/usr/lib/sysusers.d" "$r/run"
  echo "root:x:0:0:root:/root:/bin/bash" >"$r/etc/passwd"
  echo "root:x:0:" >"$r/etc/group"
  [[ ${2:-} == xpra-group-exists ]] && echo "xpra:x:120:" >>"$r/etc/group"
  : >"$r/etc/shadow"
  : >"$r/etc/gshadow"
  cp "$xpra_tmpfiles" "$r/usr/lib/tmpfiles.d/xpra.conf"
  cp "$xpra_sysusers" "$r/usr/lib/sysusers.d/xpra.conf"
  echo "$r"
}
add_broker_files() {  # what the broker's .deb installs (debian/xpra-broker.{preinst,links})
  cp "$PKG/sysusers.d/xpra-broker.conf" "$1/usr/lib/sysusers.d/"
  cp "$PKG/tmpfiles.d/xpra-broker.conf" "$1/usr/lib/tmpfiles.d/"
  mv "$1/usr/lib/tmpfiles.d/xpra.conf" "$1/usr/lib/tmpfiles.d/xpra.conf.diverted-by-xpra-broker"
  ln -s /dev/null "$1/usr/lib/tmpfiles.d/xpra.conf"
}
# Owner, group (names from the scratch root's own files) and mode of /run/xpra.
run_xpra_state() {
  local r=$1 uid gid
  read -r uid gid mode < <(stat -c '%u %g %a' "$r/run/xpra")
  echo "$(awk -F: -v id="$uid" '$3 == id { print $1 }' "$r/etc/passwd"):$(awk -F: -v id="$gid" '$3 == id { print $1 }' "$r/etc/group") $mode"
}
tmpfiles() { systemd-tmpfiles --root="$1" --create "${@:2}" 2>>"$SCRATCH/tmpfiles.log"; }

# Xpra alone: its shared, group-writable dir.
R=$(new_root xpra-only)
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
tmpfiles "$R"
expect_eq "Xpra alone: /run/xpra" "root:xpra 1775" "$(run_xpra_state "$R")"

# Broker installed on a host where Xpra's postinst made group xpra (gid 120).
R=$(new_root xpra-then-broker xpra-group-exists)
tmpfiles "$R"
add_broker_files "$R"
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
expect_eq "group xpra keeps its gid" "xpra:x:120:xpra-broker" "$(grep '^xpra:' "$R/etc/group")"
check "user xpra-broker created" grep -q '^xpra-broker:' "$R/etc/passwd"
expect_eq "number of xpra groups" 1 "$(grep -c '^xpra:' "$R/etc/group")"
tmpfiles "$R" xpra-broker.conf  # the broker's postinst
expect_eq "after the broker's postinst: /run/xpra" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"
tmpfiles "$R" xpra.conf  # Xpra's postinst, e.g. on an Xpra upgrade
expect_eq "after Xpra's postinst runs its rule: /run/xpra" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"
check "Xpra's postinst finds its (empty) rule: no error" tmpfiles "$R" xpra.conf
rm -rf "$R/run/xpra"
tmpfiles "$R"  # boot
expect_eq "at boot: /run/xpra" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"

# Fresh host, both packages, group created by sysusers: one group, one user.
R=$(new_root fresh)
add_broker_files "$R"
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
expect_eq "fresh host: number of xpra groups" 1 "$(grep -c '^xpra:' "$R/etc/group")"
check "fresh host: xpra-broker is a member of xpra" grep -Eq '^xpra:x:[0-9]+:xpra-broker$' "$R/etc/group"
tmpfiles "$R"
expect_eq "fresh host at boot: /run/xpra" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"
# sysusers again (every boot, every package install) changes nothing.
cp "$R/etc/passwd" "$SCRATCH/passwd.before"
cp "$R/etc/group" "$SCRATCH/group.before"
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
check "sysusers is idempotent (passwd)" cmp -s "$SCRATCH/passwd.before" "$R/etc/passwd"
check "sysusers is idempotent (group)" cmp -s "$SCRATCH/group.before" "$R/etc/group"

# An admin's own /etc/tmpfiles.d/xpra.conf was never touched, and still
# overrides both /usr/lib files (here: the admin wants Xpra's shared dir).
R=$(new_root admin-rule)
add_broker_files "$R"
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
echo "d /run/xpra 1775 - xpra" >"$R/etc/tmpfiles.d/xpra.conf"
tmpfiles "$R" xpra-broker.conf
expect_eq "admin's own rule: after the broker's postinst" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"
tmpfiles "$R" xpra.conf
expect_eq "admin's own rule: after Xpra's postinst, the admin's rule applies" "xpra-broker:xpra 1775" "$(run_xpra_state "$R")"

# Why the diversion: without it, Xpra's rule reopens the dir to group xpra.
R=$(new_root no-diversion)
cp "$PKG/sysusers.d/xpra-broker.conf" "$R/usr/lib/sysusers.d/"
cp "$PKG/tmpfiles.d/xpra-broker.conf" "$R/usr/lib/tmpfiles.d/"
systemd-sysusers --root="$R" 2>>"$SCRATCH/sysusers.log"
tmpfiles "$R" xpra-broker.conf
tmpfiles "$R" xpra.conf
expect_eq "without the diversion, Xpra's postinst makes /run/xpra" "xpra-broker:xpra 1775" "$(run_xpra_state "$R")"
# ... while a full run still picks the broker's rule (xpra-broker.conf sorts
# before xpra.conf; systemd-tmpfiles ignores the later duplicate line), and
# so does the RPM's trigger, which applies the broker's rule after Xpra's.
tmpfiles "$R"
expect_eq "without the diversion, at boot" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"
tmpfiles "$R" xpra.conf
tmpfiles "$R" xpra-broker.conf
expect_eq "without the diversion, after the RPM's trigger" "xpra-broker:xpra 755" "$(run_xpra_state "$R")"

log "--- systemd-sysusers said:"; cat "$SCRATCH/sysusers.log" >&2 || true
log "--- systemd-tmpfiles said:"; cat "$SCRATCH/tmpfiles.log" >&2 || true
finish
