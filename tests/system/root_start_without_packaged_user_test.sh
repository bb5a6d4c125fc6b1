#!/usr/bin/env bash
# Started by root without user=, the broker never stays root: it switches to
# the packaged xpra-broker:xpra, and when that user does not exist it refuses
# to start (exit 78) with a message saying how to choose. Only user=root
# keeps root. The host's xpra-broker is hidden in a private mount namespace
# (a copy of /etc/passwd and /etc/group without it, bind-mounted over the
# real ones), so nothing of the host changes.
source "$(dirname "$0")/lib.sh"
require_root
unshare --mount true 2>/dev/null || skip "cannot make a mount namespace here"
make_scratch root-start-default-user
X11=$SCRATCH/x11
install -d -m 1777 "$X11"

# Without the packaged user: refused, with a hint, before touching anything.
grep -v '^xpra-broker:' /etc/passwd >"$SCRATCH/passwd"
grep -v '^xpra:' /etc/group >"$SCRATCH/group"
out=$(unshare --mount bash -c "mount --bind '$SCRATCH/passwd' /etc/passwd && mount --bind '$SCRATCH/group' /etc/group &&
  exec '$XPB_BROKERD' --config=/dev/null --runtime-dir='$SCRATCH/run1' --socket='$SCRATCH/run1/broker.sock' \
    --displays=495-497 --x11-tmp-dir='$X11'" 2>&1) && rc=0 || rc=$?
expect_eq "exit code without the packaged user" 78 "$rc"
check "it says what is missing" grep -q "without user=, and the packaged user xpra-broker does not exist" <<<"$out"
check "it says how to choose" grep -q "user=NAME" <<<"$out"
check "it created no runtime dir" test ! -e "$SCRATCH/run1"

# With it (the host's real databases): runs as xpra-broker:xpra.
RUN=$SCRATCH/run2
BROKER_LOG=$SCRATCH/broker2.log
start_broker "$BROKER_LOG" -- --config=/dev/null --runtime-dir="$RUN" --socket="$RUN/broker.sock" \
  --displays=495-497 --x11-tmp-dir="$X11"
wait_for_socket "$RUN/broker.sock" || { fail "broker did not start"; finish; }
expect_eq "uids without user=" "$(uid_of xpra-broker) $(uid_of xpra-broker) $(uid_of xpra-broker) $(uid_of xpra-broker)" \
  "$(status_line "$BROKER_PID" Uid | xargs)"
expect_eq "gids without user=" "$(gid_of_group xpra) $(gid_of_group xpra) $(gid_of_group xpra) $(gid_of_group xpra)" \
  "$(status_line "$BROKER_PID" Gid | xargs)"
stop_broker

# user=root: stays root, and says so in the log and in status.
RUN=$SCRATCH/run3
BROKER_LOG=$SCRATCH/broker3.log
start_broker "$BROKER_LOG" -- --config=/dev/null --user=root --runtime-dir="$RUN" \
  --socket="$RUN/broker.sock" --displays=495-497 --x11-tmp-dir="$X11"
wait_for_socket "$RUN/broker.sock" || { fail "broker did not start"; finish; }
expect_eq "uids with user=root" "0 0 0 0" "$(status_line "$BROKER_PID" Uid | xargs)"
check "the log warns about root" grep -q "running as root because the configuration says user=root" "$BROKER_LOG"
check "status warns about root" bash -c "'$XPB_CLIENT' --socket '$RUN/broker.sock' status | grep -q 'warning: running as root'"
stop_broker
finish
