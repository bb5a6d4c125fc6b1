#!/usr/bin/env bash
# --check-config is honest: it finds what the start would refuse, with the
# start's exit code (78, which the unit's RestartPreventExitStatus= names),
# and prints the whole effective configuration; every problem goes one way
# (stderr, with file:line); a key given twice is refused; no hint advises
# deleting the lease journal. SIGHUP re-reads the file. Displays 495-497 are not used (no lease is taken).
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
out=$("$XPB_BROKERD" --config=/dev/null "${common[@]}" --check-config 2>"$SCRATCH/err") || rc=$?
expect_eq "a good configuration: --check-config exit code" 0 "$rc"
check "it says OK (on stderr, with the problems' channel)" grep -q "^xpra-brokerd: configuration OK" "$SCRATCH/err"
keys=$("$XPB_BROKERD" --help | awk '/^Every config key/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
missing=""
for key in $keys; do grep -q "^$key = " <<<"$out" || missing+=" $key"; done
expect_eq "keys of --help missing from --check-config's output" "" "$missing"
check "the command line's values are shown" grep -qx "displays = 495-497" <<<"$out"
check "stdout is a config file: every line a comment or 'key = value'" \
  bash -c '! grep -Ev "^(#|[a-z0-9-]+ = )" <<<"$1"' _ "$out"

# One channel for every problem: stderr, "problem:", the file and line of
# the key behind it, whether the parser found it or the checks of the host.
conf=$SCRATCH/problems.conf
printf '# line 1\nallowed-groups = nosuchgroup\nmax-leases = 100\n' >"$conf"
rc=0
out=$("$XPB_BROKERD" --config="$conf" "${common[@]}" --check-config 2>"$SCRATCH/err") || rc=$?
expect_eq "unknown group in a file: exit code" 78 "$rc"
check "the host check names file:line" grep -q "^xpra-brokerd: problem: $conf:2: allowed-groups: group 'nosuchgroup' does not exist" "$SCRATCH/err"
check "no problem on stdout" bash -c '! grep -qi "problem" <<<"$1"' _ "$out"
check "the verdict on stderr" grep -q "^xpra-brokerd: configuration NOT OK" "$SCRATCH/err"
printf 'max-leases = lots\n' >"$conf"
rc=0
"$XPB_BROKERD" --config="$conf" "${common[@]}" --check-config >"$SCRATCH/out" 2>"$SCRATCH/err" || rc=$?
expect_eq "a bad value: exit code" 78 "$rc"
check "the parser's problem in the same form" grep -q "^xpra-brokerd: problem: $conf:1: bad value for 'max-leases'" "$SCRATCH/err"
check "... and nothing on stdout" test ! -s "$SCRATCH/out"
printf 'max-leases = 100\ndisplays = 495-497\nmax-leases = 200\n' >"$conf"
rc=0
"$XPB_BROKERD" --config="$conf" "${common[@]}" --check-config >/dev/null 2>"$SCRATCH/err" || rc=$?
expect_eq "a key given twice: exit code" 78 "$rc"
check "a key given twice is refused, naming both lines" \
  grep -q "^xpra-brokerd: problem: $conf:3: 'max-leases' is given twice (first on line 1)" "$SCRATCH/err"
rc=0
timeout 10 "$XPB_BROKERD" --config="$conf" "${common[@]}" >/dev/null 2>&1 || rc=$?
expect_eq "a key given twice: the start refuses it too" 78 "$rc"

# No hint ever advises deleting what may hold the lease journal.
mkdir -p "$SCRATCH/shared" && chmod 1777 "$SCRATCH/shared" && touch "$SCRATCH/shared/leases.journal"
for dir in "$SCRATCH/foreign" "$SCRATCH/shared"; do
  out=$("$XPB_BROKERD" --config=/dev/null "${common[@]}" --runtime-dir="$dir" --check-config 2>&1 || true)
  check "no 'Remove it' for runtime dir $(basename "$dir")" bash -c '! grep -qi "remove it" <<<"$1"' _ "$out"
  check "the hint for $(basename "$dir") says to keep the journal" grep -Eq "keep its leases.journal|never delete leases.journal" <<<"$out"
done

# SIGHUP: what can change live is applied, the rest named (tests/system/reload_test.sh has the rest).
conf=$SCRATCH/broker.conf
printf 'log-level = info\nmax-leases = 512\n' >"$conf"
start_broker "$BROKER_LOG" -- --config="$conf" "${common[@]}" --log-target=stderr
wait_for_socket "$SOCK" || { fail "broker did not start"; finish; }
printf 'log-level = debug\nmax-leases = 100\n' >"$conf"
kill -HUP "$BROKER_PID"
for _ in $(seq 1 50); do grep -q "reload:" "$BROKER_LOG" && break; sleep 0.1; done
check "SIGHUP applies log-level and max-leases" \
  grep -q "reload: configuration re-read; applied: max-leases=100, log-level=debug$" "$BROKER_LOG"
printf 'log-level = loud\n' >"$conf"
kill -HUP "$BROKER_PID"
for _ in $(seq 1 50); do grep -q "does not load" "$BROKER_LOG" && break; sleep 0.1; done
check "a file that does not load changes nothing and is an error" grep -q "error: reload: the configuration does not load" "$BROKER_LOG"
check "the broker still serves after both" kill -0 "$BROKER_PID"
stop_broker
finish
