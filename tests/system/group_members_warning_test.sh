#!/usr/bin/env bash
# The old advice "put every user into group xpra" defeats the per-user
# directories (group xpra can enter all of them). The broker warns at start-up
# and in status when ordinary users are members of its group. To leave the
# real group xpra alone (other suites run in parallel), the broker runs here
# with its own group xpb-brokergrp, of which xpb-bob is a member.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch group-members
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log

remove_group() { groupdel xpb-brokergrp 2>/dev/null || true; }
(
  flock 9
  getent group xpb-brokergrp >/dev/null || groupadd xpb-brokergrp
  usermod -a -G xpb-brokergrp xpb-bob
) 9>/run/xpra-broker-test-users.lock
trap 'remove_group; cleanup' EXIT

start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpb-brokergrp \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=475-479 --x11-tmp-dir="$SCRATCH/x11"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }

expect_eq "broker's group" "$(gid_of_group xpb-brokergrp)" "$(status_line "$BROKER_PID" Gid | awk '{print $2}')"
check "start-up warning names xpb-bob" grep -q "warning: .*xpb-bob.*members of the broker's group" "$BROKER_LOG"
check "start-up warning does not name the broker user" bash -c "! grep 'members of the broker' '$BROKER_LOG' | grep -q xpra-broker"
check "status --json warnings name xpb-bob" bash -c \
  "'$XPB_CLIENT' --socket '$SOCK' status --json | grep -A5 '\"warnings\"' | grep -q 'xpb-bob'"
check "status (text) warns about xpb-bob" bash -c "'$XPB_CLIENT' --socket '$SOCK' status | grep -q '^warning: .*xpb-bob'"

stop_broker
finish
