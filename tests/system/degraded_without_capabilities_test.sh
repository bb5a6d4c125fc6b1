#!/usr/bin/env bash
# An ordinary user starts the broker: it has none of the capabilities it
# wants. It must say so at start-up, one line per missing capability naming
# the feature that is degraded, repeat it in `status`, and fail a request that
# needs one with a reason, never silently. With require-capabilities=yes it
# must refuse to start instead.
source "$(dirname "$0")/lib.sh"
require_root
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
make_scratch degraded
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
install -d -m 0755 -o xpb-alice -g xpb-alice "$RUN"

start_broker "$BROKER_LOG" setpriv --reuid=xpb-alice --regid=xpb-alice --init-groups -- \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=460-464 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

expect_eq "CapPrm of a broker started without capabilities" "$CAP_MASK_NONE" "$(status_field "$BROKER_PID" CapPrm)"
expect_eq "NoNewPrivs" "1" "$(status_field "$BROKER_PID" NoNewPrivs)"
for cap in cap_chown cap_fowner cap_kill; do
  check "start-up warning for $cap" grep -q "warning: capability $cap is not available: ." "$BROKER_LOG"
done
check "warnings come before 'serving'" bash -c \
  "awk '/is not available/ { w = NR } /serving/ { s = NR } END { exit !(w && s && w < s) }' '$BROKER_LOG'"

status_text=$(client root status)
status_json=$(client root status --json)
for cap in cap_chown cap_fowner cap_kill; do
  check "status lists $cap as missing" grep -q "warning: capability $cap is not available" <<<"$status_text"
  check "status --json lists $cap as missing" grep -q "capability $cap is not available" <<<"$status_json"
done

# The broker's own user is served (no chown needed) ...
check "xpb-alice (the broker's own uid) gets a display" client xpb-alice exec -- true
# ... another user is refused with the reason, not silently.
rc=0
out=$(client xpb-bob exec -- true 2>&1) || rc=$?
check "xpb-bob's request fails (exit $rc)" test "$rc" -ne 0
check "the refusal names CAP_CHOWN" grep -q "CAP_CHOWN" <<<"$out"
check "the broker logs the refusal with the reason" grep -q "lacks CAP_CHOWN" "$BROKER_LOG"

stop_broker

# require-capabilities=yes: refuse, before serving anything.
RUN2=$SCRATCH/run2
SOCK=$RUN2/broker.sock
install -d -m 0755 -o xpb-alice -g xpb-alice "$RUN2"
start_broker "$BROKER_LOG" setpriv --reuid=xpb-alice --regid=xpb-alice --init-groups -- \
  --require-capabilities=yes --runtime-dir="$RUN2" --socket="$SOCK" --displays=460-464 --x11-tmp-dir="$SCRATCH/x11"
wait_for_exit "$BROKER_PID" 10
expect_eq "require-capabilities=yes without them: exit code" 78 "$EXIT_CODE"
check "the refusal names the missing capabilities" \
  grep -q "critical: cannot start: missing capabilities cap_chown,cap_fowner,cap_kill" "$BROKER_LOG"
check "no socket was created" test ! -e "$SOCK"
# ... and starts when they are all there (as the unit gives them).
install -d -m 0755 -o xpra-broker -g xpra "$SCRATCH/run3"
start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- --require-capabilities=yes \
  --runtime-dir="$SCRATCH/run3" --socket="$SCRATCH/run3/broker.sock" --displays=460-464 --x11-tmp-dir="$SCRATCH/x11"
check "require-capabilities=yes with all three: the broker serves" wait_for_socket "$SCRATCH/run3/broker.sock"
stop_broker
finish
