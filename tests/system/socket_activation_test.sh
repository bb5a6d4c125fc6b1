#!/usr/bin/env bash
# Socket activation and readiness, as with xpra-brokerd.socket and Type=notify:
# the broker takes the listening socket it is passed (LISTEN_FDS), serves it,
# sends READY=1 on $NOTIFY_SOCKET only once it serves, and does not remove
# the socket file it did not create when it stops.
source "$(dirname "$0")/lib.sh"
require_root
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || skip "/usr/bin/python3 not installed (used to receive sd_notify messages)"
make_scratch socket-activation
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
install -d -m 0755 -o xpra-broker -g xpra "$RUN"

# A stand-in for systemd's notification socket, readable by the test only
# after the broker (as xpra-broker) wrote to it.
NOTIFY=$SCRATCH/notify.sock
$PYTHON - "$NOTIFY" "$SCRATCH/notify.txt" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(30)
with open(sys.argv[2], "w") as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg + "\n---\n")
        out.flush()
        if "READY=1" in msg:
            break
PY
STARTED_PIDS+=($!)
for _ in $(seq 1 50); do [[ -S $NOTIFY ]] && break; sleep 0.1; done

# systemd-socket-activate binds the socket and, on the first connection,
# execs the broker with it as fd 3 (LISTEN_FDS=1), as the .socket unit does.
(
  exec systemd-socket-activate -l "$SOCK" -E NOTIFY_SOCKET="$NOTIFY" \
    "${UNIT_LIKE_START[@]}" "$XPB_BROKERD" --runtime-dir="$RUN" --socket="$SOCK" \
    --displays=485-489 --x11-tmp-dir="$SCRATCH/x11"
) >"$BROKER_LOG" 2>&1 &
activator=$!
STARTED_PIDS+=("$activator")
for _ in $(seq 1 50); do [[ -S $SOCK ]] && break; sleep 0.1; done
check "the activator listens before the broker runs" test -S "$SOCK"
chmod 0666 "$SOCK"  # SocketMode=0666
expect_eq "process waiting for the first connection" systemd-socket- "$(cut -c1-15 "/proc/$activator/comm")"

check "xpb-alice is served through the passed socket" client xpb-alice exec -- true
check "the broker says the socket came from systemd" grep -q "socket from systemd" "$BROKER_LOG"
for _ in $(seq 1 50); do grep -q READY=1 "$SCRATCH/notify.txt" 2>/dev/null && break; sleep 0.1; done
check "READY=1 was sent" grep -q "READY=1" "$SCRATCH/notify.txt"
check "with STATUS=serving" grep -q "STATUS=serving" "$SCRATCH/notify.txt"

# The activator execs the broker: same pid.
broker=$activator
expect_eq "process after the first connection" xpra-brokerd "$(cat "/proc/$broker/comm" 2>&1)"
if [[ "$(cat "/proc/$broker/comm" 2>&1)" == xpra-brokerd ]]; then
  check_broker_credentials "$broker" "socket-activated:"
  kill "$broker"
  for _ in $(seq 1 50); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
  check "the passed socket file stays when the broker stops" test -S "$SOCK"
fi
finish
