#!/usr/bin/env bash
# allowed-groups: a user outside them is denied (exit 125: exec's own code for
# "permission denied", 77 elsewhere) and gets
# no directory; members are served.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch allowed-groups
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log

start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpra --allowed-groups=xpb-users \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=470-474 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

rc=0
client xpb-mallory exec -- true 2>"$SCRATCH/mallory.err" || rc=$?
expect_eq "xpb-mallory's exit code" 125 "$rc"
check "xpb-mallory got no directory" test ! -e "$RUN/$(uid_of xpb-mallory)"
check "the denial is logged with the uid" grep -q "uid=$(uid_of xpb-mallory)(xpb-mallory) pid=[0-9]* denied " "$BROKER_LOG"
check "xpb-alice (in xpb-users) is served" client xpb-alice exec -- true

stop_broker
finish
