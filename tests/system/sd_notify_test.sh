#!/usr/bin/env bash
# What the broker tells systemd (Type=notify, WatchdogSec=), checked on a
# notify socket of the test's own: READY=1 once it serves, WATCHDOG=1 every
# second from the event loop while the watchdog is on, and STATUS= with live
# counts (leases, free displays) that follow a lease. Displays 1157-1159.
source "$(dirname "$0")/lib.sh"
require_root
PY=/usr/bin/python3
[[ -x $PY ]] || skip "python3 is not installed"
make_scratch notify
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
NOTIFY=$SCRATCH/notify.sock
MESSAGES=$SCRATCH/notify.log
# A datagram socket like systemd's, writing each message on one line.
"$PY" - "$NOTIFY" "$MESSAGES" <<'PYEOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        out.write(s.recv(4096).decode().replace("\n", " | ") + "\n")
PYEOF
STARTED_PIDS+=($!)
for _ in $(seq 1 50); do [[ -S $NOTIFY ]] && break; sleep 0.1; done
start_broker "$BROKER_LOG" env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=2000000 -- \
  --user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" --displays=1157-1159 \
  --x11-tmp-dir="$SCRATCH/x11" --log-target=stderr
wait_for_socket "$SOCK" || { fail "broker did not start"; finish; }
# env execs the broker, so $BROKER_PID is the broker: sd_watchdog_enabled()
# wants WATCHDOG_PID unset or equal to it.
sleep 2.5
check "READY=1 once it serves" grep -q "READY=1" "$MESSAGES"
watchdog_pings=$(grep -c "WATCHDOG=1" "$MESSAGES" || true)
check "WATCHDOG=1 every second ($watchdog_pings in 2.5 s)" test "$watchdog_pings" -ge 2
check "STATUS= counts the leases and free displays" grep -q "STATUS=serving: 0 lease(s), 3 free display(s)" "$MESSAGES"
client xpb-alice exec -- sleep 3 &
STARTED_PIDS+=($!)
for _ in $(seq 1 40); do grep -q "STATUS=serving: 1 lease(s), 2 free display(s)" "$MESSAGES" && break; sleep 0.1; done
check "STATUS= follows a lease" grep -q "STATUS=serving: 1 lease(s), 2 free display(s)" "$MESSAGES"
stop_broker
check "STOPPING=1 on SIGTERM" grep -q "STOPPING=1" "$MESSAGES"
finish
