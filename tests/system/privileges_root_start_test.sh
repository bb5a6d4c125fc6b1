#!/usr/bin/env bash
# Root starts the broker without systemd, the way an init script would:
#   xpra-brokerd --user=xpra-broker --group=xpra ...
# It must switch to xpra-broker:xpra itself and keep exactly CAP_CHOWN,
# CAP_FOWNER and CAP_KILL: permitted only, nothing effective, inheritable or
# ambient, a bounding set of just those three, and no_new_privs.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch privileges-root
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log

start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" \
  --displays=450-454 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

check_broker_credentials "$BROKER_PID" "root start:"
expect_eq "root start: supplementary groups" "$(gid_of_group xpra)" "$(status_line "$BROKER_PID" Groups | xargs)"
check "start-up log names the kept capabilities" \
  grep -q "capabilities kept.*cap_chown,cap_fowner,cap_kill" "$BROKER_LOG"
check "no capability reported missing" bash -c "! grep -q 'is not available' '$BROKER_LOG'"

# The capabilities are usable: a user's directory is handed to the user
# (CAP_CHOWN raised around fchown), and lowered again afterwards.
alice_uid=$(uid_of xpb-alice)
check "xpb-alice gets a display" client xpb-alice exec -- true
expect_eq "owner of xpb-alice's dir" "xpb-alice:xpra 770" "$(stat -c '%U:%G %a' "$RUN/$alice_uid")"
expect_eq "CapEff after serving a request" "$CAP_MASK_NONE" "$(status_field "$BROKER_PID" CapEff)"
expect_eq "CapPrm after serving a request" "$CAP_MASK_BROKER" "$(status_field "$BROKER_PID" CapPrm)"

stop_broker
finish
