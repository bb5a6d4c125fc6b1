#!/usr/bin/env bash
# The runtime dir belongs to the broker and nobody else can write into it;
# each user's directory <runtime-dir>/<uid> is the user's, group xpra, 0770,
# and other users can neither write into nor list it.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch runtime-dir
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
# As on a host with Xpra's tmpfiles rule: the dir exists, 1775 root:xpra.
install -d -m 1775 -o root -g xpra "$RUN"

start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" \
  --displays=465-469 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

expect_eq "runtime dir owner, group, mode (root start takes it over)" "xpra-broker:xpra 755" \
  "$(stat -c '%U:%G %a' "$RUN")"
alice_uid=$(uid_of xpb-alice)
bob_uid=$(uid_of xpb-bob)
check "xpb-alice gets a display" client xpb-alice exec -- true
check "xpb-bob gets a display" client xpb-bob exec -- true
expect_eq "xpb-alice's dir" "xpb-alice:xpra 770 directory" "$(stat -c '%U:%G %a %F' "$RUN/$alice_uid")"
expect_eq "xpb-bob's dir" "xpb-bob:xpra 770 directory" "$(stat -c '%U:%G %a %F' "$RUN/$bob_uid")"

for user in xpb-alice xpb-bob xpb-mallory; do
  check "$user cannot create a file in the runtime dir" bash -c "! runuser -u $user -- touch '$RUN/planted-by-$user' 2>/dev/null"
  check "$user cannot create a directory in the runtime dir" bash -c "! runuser -u $user -- mkdir '$RUN/99999' 2>/dev/null"
  check "$user cannot remove broker.lock" bash -c "! runuser -u $user -- rm -f '$RUN/broker.lock' 2>/dev/null"
done
check "xpb-bob cannot create a file in xpb-alice's dir" bash -c "! runuser -u xpb-bob -- touch '$RUN/$alice_uid/x' 2>/dev/null"
check "xpb-bob cannot list xpb-alice's dir" bash -c "! runuser -u xpb-bob -- ls '$RUN/$alice_uid' >/dev/null 2>&1"
check "xpb-mallory cannot create a file in xpb-alice's dir" bash -c "! runuser -u xpb-mallory -- touch '$RUN/$alice_uid/x' 2>/dev/null"
check "xpb-alice cannot create a file in xpb-bob's dir" bash -c "! runuser -u xpb-alice -- touch '$RUN/$bob_uid/x' 2>/dev/null"
check "xpb-alice can create a file in her own dir" runuser -u xpb-alice -- touch "$RUN/$alice_uid/mine"

# A mode that drifted (the user chmod'ed the dir open) is repaired on the
# next request.
chmod 0777 "$RUN/$alice_uid"
check "xpb-alice gets a display again" client xpb-alice exec -- true
expect_eq "xpb-alice's dir after repair" "xpb-alice:xpra 770" "$(stat -c '%U:%G %a' "$RUN/$alice_uid")"

stop_broker

# Started as the unit starts it on a /run/xpra that Xpra's tmpfiles rule
# reopened (1775 root:xpra, e.g. after the mask was deleted): users of group
# xpra could plant files next to the journal and the users' directories, and
# the broker cannot fix that without root. It refuses to start (exit 78: a setup problem a restart cannot fix) and
# says what to do, rather than trust such a directory.
RUN2=$SCRATCH/run2
SOCK=$RUN2/broker.sock
install -d -m 1775 -o root -g xpra "$RUN2"
start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- --runtime-dir="$RUN2" --socket="$SOCK" \
  --displays=465-469 --x11-tmp-dir="$SCRATCH/x11"
wait_for_exit "$BROKER_PID" 10
expect_eq "exit code for a foreign-owned, group-writable runtime dir" 78 "$EXIT_CODE"
check "it says why" grep -q "unsafe runtime dir $RUN2: owned by uid 0" "$BROKER_LOG"
check "it never listened" test ! -S "$SOCK"

# The broker's own dir, but group-writable: refused too.
chown xpra-broker:xpra "$RUN2"
start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- --runtime-dir="$RUN2" --socket="$SOCK" \
  --displays=465-469 --x11-tmp-dir="$SCRATCH/x11"
wait_for_exit "$BROKER_PID" 10
expect_eq "exit code for a group-writable runtime dir" 78 "$EXIT_CODE"
check "it says how to fix it" grep -q "unsafe runtime dir $RUN2: writable by group or others (mode 1775).*chmod 0755" "$BROKER_LOG"
finish
