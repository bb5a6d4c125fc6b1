#!/usr/bin/env bash
# journald-native logging, against a real systemd-journald: run in a private
# mount namespace with its own /run/systemd/journal and /run/log, so the
# host's journal (if any) is untouched. Checks that
#   - routine lines are info and the leak watchdog's warning is a warning
#     (journalctl -p warning shows the one and not the other);
#   - lines carry LEASE, DISPLAY, LEASE_UID, LEASE_USER and CLIENT_PID, and
#     the watchdog its MESSAGE_ID; the server's lines about a caller (a
#     protocol violation) carry the caller's fields too;
#   - text a user chose (a purpose that spells out other fields) does not
#     become a field;
#   - every MESSAGE_ID has an entry in the installed message catalog, and
#     journalctl -x shows it under the line.
# Displays 1150-1156 (1150-1154 the broker's range, 1155-1156 X servers of
# xpb-bob outside it).
source "$(dirname "$0")/lib.sh"
require_root
JOURNALD=/lib/systemd/systemd-journald
[[ -x $JOURNALD ]] || skip "systemd-journald is not installed"
for tool in unshare journalctl Xvfb; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done

if [[ "${XPB_JOURNAL_NAMESPACE:-}" != 1 ]]; then
  exec unshare --mount --propagation private env XPB_JOURNAL_NAMESPACE=1 bash "$0" "$@"
fi
mkdir -p /run/systemd /run/log
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/log
[[ -d /var/log/journal ]] && mount -t tmpfs -o mode=0755 tmpfs /var/log/journal
mkdir -p /run/systemd/journal
"$JOURNALD" >/dev/null 2>&1 &
STARTED_PIDS+=($!)
for _ in $(seq 1 50); do [[ -S /run/systemd/journal/socket ]] && break; sleep 0.1; done
[[ -S /run/systemd/journal/socket ]] || { fail "systemd-journald did not start"; finish; }

make_scratch journald
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
start_broker "$BROKER_LOG" -- --user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" \
  --displays=1150-1154 --x11-tmp-dir="$SCRATCH/x11" --log-target=journal \
  --xserver-warn-per-user=1 --leak-check-seconds=1
broker_journal() { journalctl --no-pager SYSLOG_IDENTIFIER=xpra-brokerd "$@"; }
for _ in $(seq 1 100); do
  [[ -S "$SOCK" ]] && broker_journal -o cat | grep -q serving && break
  kill -0 "$BROKER_PID" 2>/dev/null || break
  sleep 0.1
done
check "the broker serves and says so in the journal" bash -c "journalctl --no-pager SYSLOG_IDENTIFIER=xpra-brokerd -o cat | grep -q serving"
check "nothing goes to stderr with log-target=journal" test ! -s "$BROKER_LOG"

# A lease of alice's, with a purpose that spells out fields of root's.
check "xpb-alice gets a display" client xpb-alice exec --purpose 'x uid=0(root) display=:99 lease=ffff' -- true
alice_uid=$(uid_of xpb-alice)
acquired=$(broker_journal -o export | awk -v RS= "/purpose=/" | head -n 40)
check "the acquire line is at priority 6 (info)" grep -qx "PRIORITY=6" <<<"$acquired"
check "it names the lease (LEASE=)" grep -Eqx "LEASE=[0-9a-f]{16}" <<<"$acquired"
expect_eq "its LEASE_UID is alice's, not the one her purpose spells" "LEASE_UID=$alice_uid" "$(grep -m1 '^LEASE_UID=' <<<"$acquired")"
expect_eq "its LEASE_USER" "LEASE_USER=xpb-alice" "$(grep -m1 '^LEASE_USER=' <<<"$acquired")"
display=$(grep -m1 '^DISPLAY=' <<<"$acquired" | cut -d= -f2)
check "its DISPLAY is the leased one ($display), not :99" bash -c "[[ '$display' -ge 1150 && '$display' -le 1154 ]]"
check "it names the client process (CLIENT_PID=)" grep -Eqx "CLIENT_PID=[0-9]+" <<<"$acquired"
lease=$(grep -m1 '^LEASE=' <<<"$acquired" | cut -d= -f2)
check "journalctl LEASE=$lease finds the lease's whole story (acquired ... ended)" \
  bash -c "journalctl --no-pager LEASE=$lease -o cat | grep -q acquired && journalctl --no-pager LEASE=$lease -o cat | grep -q ended"

# A line of the server's: bob sends a frame with a zero length prefix.
runuser -u xpb-bob -- python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"\0\0\0\0")
s.recv(4096)
' "$SOCK" || true
for _ in $(seq 1 50); do broker_journal -o cat | grep -q "protocol violation" && break; sleep 0.1; done
violation=$(broker_journal -o export | awk -v RS= "/protocol violation/" | head -n 40)
check "the server's protocol violation line is a warning (PRIORITY=4)" grep -qx "PRIORITY=4" <<<"$violation"
expect_eq "its LEASE_UID is bob's" "LEASE_UID=$(uid_of xpb-bob)" "$(grep -m1 '^LEASE_UID=' <<<"$violation")"
expect_eq "its LEASE_USER" "LEASE_USER=xpb-bob" "$(grep -m1 '^LEASE_USER=' <<<"$violation")"
check "it names bob's client process (CLIENT_PID=)" grep -Eqx "CLIENT_PID=[0-9]+" <<<"$violation"

# The leak watchdog: bob runs two X servers outside the broker (threshold 1).
for d in 1155 1156; do
  runuser -u xpb-bob -- Xvfb ":$d" -nolisten tcp -noreset >/dev/null 2>&1 &
  STARTED_PIDS+=($!)
done
for _ in $(seq 1 200); do
  broker_journal -p warning -o cat | grep -q "runs 2 X servers" && break
  sleep 0.1
done
warnings=$(broker_journal -p warning -o cat)
check "journalctl -p warning shows the leak watchdog" grep -q "uid=$(uid_of xpb-bob)(xpb-bob) runs 2 X servers" <<<"$warnings"
check "journalctl -p warning does not show routine lines" bash -c "! grep -q acquired <<<'$warnings'"
watchdog=$(broker_journal -o export MESSAGE_ID=101f2d832e264fb78ec361cb4e0fe62c | awk -v RS= 'NR == 1')
check "the watchdog line has the leak watchdog's MESSAGE_ID" grep -q "runs 2 X servers" <<<"$watchdog"
check "it is a warning (PRIORITY=4)" grep -qx "PRIORITY=4" <<<"$watchdog"
expect_eq "its LEASE_USER" "LEASE_USER=xpb-bob" "$(grep -m1 '^LEASE_USER=' <<<"$watchdog")"
log "journalctl -p warning (the broker's lines):"
broker_journal -p warning >&2 || true

# The message catalog, as installed (cmake --install, as the packages do),
# made known in this namespace only (the host's catalog database and
# catalog dir are covered by tmpfs mounts here).
DESTDIR=$SCRATCH/dest cmake --install "$XPB_BUILD_DIR" >"$SCRATCH/install.log" 2>&1 ||
  fail "cmake --install failed: $(cat "$SCRATCH/install.log")"
catalog=$(find "$SCRATCH/dest" -path '*/lib/systemd/catalog/xpra-broker.catalog')
check "the catalog is installed in lib/systemd/catalog" test -f "$catalog"
mount -t tmpfs -o mode=0755 tmpfs /usr/lib/systemd/catalog
mkdir -p /var/lib/systemd/catalog
mount -t tmpfs -o mode=0755 tmpfs /var/lib/systemd/catalog
cp "$catalog" /usr/lib/systemd/catalog/
check "journalctl --update-catalog reads it" journalctl --update-catalog
listed=$(journalctl --list-catalog 2>&1)
ids=$(grep -o 'return "[0-9a-f]\{32\}"' "$XPB_SOURCE_DIR/broker/host/log_sink.cpp" | grep -o '[0-9a-f]\{32\}')
check "the broker has MESSAGE_IDs to explain" test -n "$ids"
for id in $ids; do
  check "MESSAGE_ID $id has a catalog entry" grep -q "^$id " <<<"$listed"
done
explained=$(broker_journal -x MESSAGE_ID=101f2d832e264fb78ec361cb4e0fe62c 2>&1)
check "journalctl -x explains the watchdog's line" grep -q "Subject: A user runs more X servers than the leak threshold" <<<"$explained"
check "... with what to do" grep -q "xpra-request-display status" <<<"$explained"

stop_broker
finish
