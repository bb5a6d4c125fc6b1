#!/usr/bin/env bash
# --check-config is honest: it finds what the start would refuse, with the
# start's exit code (78, which the unit's RestartPreventExitStatus= names),
# and prints the whole effective configuration. SIGHUP re-reads the file and
# applies log-level. Displays 495-497 are not used (no lease is taken).
source "$(dirname "$0")/lib.sh"
require_root
make_scratch config
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
common=(--user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" --x11-tmp-dir="$SCRATCH/x11"
  --displays=495-497)

# Each problem: --check-config and the start agree on 78, and both name it.
refusal() {  # refusal WHAT PATTERN ARGS...
  local what=$1 pattern=$2 rc=0 out
  shift 2
  out=$("$XPB_BROKERD" --config=/dev/null "${common[@]}" "$@" --check-config 2>&1) || rc=$?
  expect_eq "$what: --check-config exit code" 78 "$rc"
  check "$what: --check-config names the problem" grep -q "$pattern" <<<"$out"
  rc=0
  out=$(timeout 10 "$XPB_BROKERD" --config=/dev/null "${common[@]}" "$@" 2>&1) || rc=$?
  expect_eq "$what: the start's exit code" 78 "$rc"
  check "$what: the start names the problem" grep -q "$pattern" <<<"$out"
}
refusal "unknown allowed group" "group 'nosuchgroup' does not exist" --allowed-groups=nosuchgroup
refusal "unknown admin group" "group 'nosuchadmins' does not exist" --admin-groups=nosuchadmins
refusal "unknown user" "user 'nosuchuser' does not exist" --user=nosuchuser
mkdir -p "$SCRATCH/foreign" && chown xpb-alice "$SCRATCH/foreign" && chmod 0775 "$SCRATCH/foreign"
touch "$SCRATCH/foreign/planted"
refusal "a runtime dir another user owns" "unsafe runtime dir" --runtime-dir="$SCRATCH/foreign"
touch "$SCRATCH/not-a-socket"
refusal "a file at the socket path" "exists and is not a socket" --socket="$SCRATCH/not-a-socket"

# A good configuration: exit 0 and every key of --help, with its value.
rc=0
out=$("$XPB_BROKERD" --config=/dev/null "${common[@]}" --check-config 2>&1) || rc=$?
expect_eq "a good configuration: --check-config exit code" 0 "$rc"
check "it says OK" grep -q "^configuration OK" <<<"$out"
keys=$("$XPB_BROKERD" --help | awk '/^Every config key/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }')
missing=""
for key in $keys; do grep -q "^$key = " <<<"$out" || missing+=" $key"; done
expect_eq "keys of --help missing from --check-config's output" "" "$missing"
check "the command line's values are shown" grep -qx "displays = 495-497" <<<"$out"

# SIGHUP: log-level applies, other changes are named as needing a restart.
conf=$SCRATCH/broker.conf
printf 'log-level = info\nmax-leases = 512\n' >"$conf"
start_broker "$BROKER_LOG" -- --config="$conf" "${common[@]}" --log-target=stderr
wait_for_socket "$SOCK" || { fail "broker did not start"; finish; }
printf 'log-level = debug\nmax-leases = 100\n' >"$conf"
kill -HUP "$BROKER_PID"
for _ in $(seq 1 50); do grep -q "SIGHUP" "$BROKER_LOG" && break; sleep 0.1; done
check "SIGHUP applies log-level and names max-leases as needing a restart" \
  grep -q "SIGHUP: configuration re-read; log-level=debug applied; changed but applied only by a restart: max-leases" "$BROKER_LOG"
printf 'log-level = loud\n' >"$conf"
kill -HUP "$BROKER_PID"
for _ in $(seq 1 50); do grep -q "does not load" "$BROKER_LOG" && break; sleep 0.1; done
check "a file that does not load changes nothing and is an error" grep -q "error: SIGHUP: the configuration does not load" "$BROKER_LOG"
check "the broker still serves after both" kill -0 "$BROKER_PID"
stop_broker
finish
