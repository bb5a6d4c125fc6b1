#!/usr/bin/env bash
# The broker started the way xpra-brokerd.service starts it (User=xpra-broker,
# Group=xpra, AmbientCapabilities= and CapabilityBoundingSet= of
# CAP_CHOWN CAP_FOWNER CAP_KILL, NoNewPrivileges=yes), reproduced with setpriv
# because systemd is not PID 1 here. The broker must drop the ambient and
# inheritable sets it was given and keep the three permitted, not effective.
source "$(dirname "$0")/lib.sh"
require_root
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
make_scratch privileges-unit
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
# What the tmpfiles.d rule does for /run/xpra.
install -d -m 0755 -o xpra-broker -g xpra "$RUN"

start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- --runtime-dir="$RUN" --socket="$SOCK" \
  --displays=455-459 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

check_broker_credentials "$BROKER_PID" "unit-like start:"
check "start-up log names the kept capabilities" \
  grep -q "capabilities kept.*cap_chown,cap_fowner,cap_kill" "$BROKER_LOG"
check "no start-up warnings" bash -c "! grep -q 'warning:' '$BROKER_LOG'"

alice_uid=$(uid_of xpb-alice)
check "xpb-alice gets a display" client xpb-alice exec -- true
expect_eq "owner of xpb-alice's dir" "xpb-alice:xpra 770" "$(stat -c '%U:%G %a' "$RUN/$alice_uid")"
expect_eq "CapEff after serving a request" "$CAP_MASK_NONE" "$(status_field "$BROKER_PID" CapEff)"

# The same with --clear-groups (no supplementary groups at all).
stop_broker
start_broker "$BROKER_LOG" setpriv --reuid=xpra-broker --regid=xpra --clear-groups \
  --inh-caps=+chown,+fowner,+kill --ambient-caps=+chown,+fowner,+kill \
  --bounding-set=-all,+chown,+fowner,+kill --no-new-privs -- \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=455-459 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }
check_broker_credentials "$BROKER_PID" "setpriv --clear-groups:"
expect_eq "setpriv --clear-groups: supplementary groups" "" "$(status_line "$BROKER_PID" Groups | xargs)"
stop_broker
finish
