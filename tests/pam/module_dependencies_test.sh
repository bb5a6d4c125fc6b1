#!/usr/bin/env bash
# pam_xpra_broker.so is loaded into sshd, login and the hub: it must bring
# nothing into them but itself. Two checks:
#   elf      its DT_NEEDED entries are libc and libpam only (no libstdc++,
#            libgcc_s or libprotobuf, which the C++ module pulled in), and it
#            exports only pam_sm_open_session and pam_sm_close_session;
#   runtime  a real PAM application (pamtester) in a session opened through
#            the module maps exactly one library more than the same stack
#            without it: the module. The lists come from /proc/PID/maps of
#            pamtester, read by a pam_exec script further down the stack
#            while the session is being opened. Needs root (/etc/pam.d).
# Prints the libraries and their counts, the figures of docs/pam.md.
# Usage: module_dependencies_test.sh elf|runtime MODULE
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 elf|runtime MODULE" >&2; exit 64; }
mode=$1 module=$(readlink -f "$2")
[ -f "$module" ] || { echo "FAIL: no module at $module"; exit 1; }

fail() { echo "FAIL: $*" >&2; exit 1; }

check_elf() {
  command -v readelf >/dev/null || fail "readelf is not installed (binutils, scripts/install-deps.sh)"
  local dynamic needed unexpected exported
  dynamic=$(readelf --dynamic --wide "$module") || fail "readelf cannot read $module"
  needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' <<<"$dynamic" | sort)
  [ -n "$needed" ] || fail "no DT_NEEDED entries read from $module: $dynamic"
  echo "DT_NEEDED ($(wc -l <<<"$needed")): $(tr '\n' ' ' <<<"$needed")"
  for forbidden in libstdc++ libgcc_s libprotobuf; do
    if grep -q "^$forbidden" <<<"$needed"; then
      fail "$module links $forbidden: the module must stay C with libc and libpam only (pam/CMakeLists.txt)"
    fi
  done
  unexpected=$(grep -Ev '^(libc\.so\.6|libpam\.so\.0)$' <<<"$needed" || true)
  [ -z "$unexpected" ] || fail "$module needs more than libc and libpam: $unexpected"
  if grep -q 'FLAGS_1.*NODELETE' <<<"$dynamic"; then fail "$module is linked -z nodelete, which it no longer needs"; fi
  exported=$(readelf --dyn-syms --wide "$module" | awk '$5 == "GLOBAL" && $7 != "UND" {sub(/@.*/, "", $8); print $8}' | sort)
  [ "$exported" = "$(printf 'pam_sm_close_session\npam_sm_open_session')" ] ||
    fail "$module exports more or less than pam_sm_open_session and pam_sm_close_session: $(tr '\n' ' ' <<<"$exported")"
  echo "ok: $module needs only libc and libpam and exports only pam_sm_open_session, pam_sm_close_session"
}

check_runtime() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: writes a service file to /etc/pam.d; run as root"
    exit 77
  fi
  command -v pamtester >/dev/null || fail "pamtester is not installed (scripts/install-deps.sh)"
  tmp=$(mktemp -d /tmp/xpb-pam-libs.XXXXXX)
  chmod 0755 "$tmp"
  service=xpra-broker-test-libraries-$$
  trap 'rm -rf "$tmp"; rm -f "/etc/pam.d/$service"' EXIT
  # Run by pam_exec as a child of pamtester: the parent's mapped shared objects.
  cat >"$tmp/dump-maps" <<'SCRIPT'
#!/bin/sh
awk '$6 ~ /\.so/ {print $6}' "/proc/$PPID/maps" | sort -u >"$(dirname "$0")/maps"
SCRIPT
  chmod 0755 "$tmp/dump-maps"

  # mapped_in_session [MODULE-LINE]: the libraries pamtester has mapped in a
  # session whose stack is MODULE-LINE (if any) followed by the dump.
  mapped_in_session() {
    rm -f "$tmp/maps"
    {
      [ $# -eq 0 ] || echo "session required $1"
      echo "session required pam_exec.so $tmp/dump-maps"
    } >"/etc/pam.d/$service"
    pamtester "$service" root open_session >"$tmp/pamtester.out" 2>&1 ||
      fail "pamtester could not open a session: $(cat "$tmp/pamtester.out")"
    [ -s "$tmp/maps" ] || fail "pam_exec did not run the map dump"
    cat "$tmp/maps"
  }

  local without with added
  without=$(mapped_in_session)
  # The broker is not there (fail=open lets the session through): the module
  # runs all its code up to the connect, and loads what it links either way.
  with=$(mapped_in_session "$module socket=$tmp/no-broker.sock fail=open")
  echo "mapped in the session without the module: $(wc -l <<<"$without")"
  echo "mapped in the session with the module:    $(wc -l <<<"$with")"
  added=$(comm -13 <(echo "$without") <(echo "$with"))
  echo "added by the module: $(tr '\n' ' ' <<<"$added")"
  if grep -qE 'lib(stdc\+\+|protobuf|gcc_s)' <<<"$with"; then
    fail "a C++ runtime or libprotobuf is mapped in the session: $(grep -E 'lib(stdc\+\+|protobuf|gcc_s)' <<<"$with" | tr '\n' ' ')"
  fi
  [ "$(readlink -f "$added")" = "$(readlink -f "$module")" ] ||
    fail "the module should add exactly itself to the process, it added: $(tr '\n' ' ' <<<"$added")"
  echo "ok: the module adds only itself to a process running the PAM stack"
}

case $mode in
  elf) check_elf ;;
  runtime) check_runtime ;;
  *) fail "unknown mode '$mode'" ;;
esac
