#!/usr/bin/env bash
# `systemctl reload` as the unit runs it (ExecReload=xpra-brokerd
# --reload=$MAINPID) on a broker started as the unit starts it: the range,
# a quota, a rate, the groups and the log level change while a lease is
# held, and take effect without a restart; a key that needs a restart is
# named as such; a configuration that does not load makes the reload fail
# (exit 78, file:line), changes nothing, and shows in `status` until a
# reload works. Displays 52900-52909 with a private X11 dir (no X server).
source "$(dirname "$0")/lib.sh"
require_root
make_scratch reload
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
CONF=$SCRATCH/broker.conf
mkdir -m 0755 "$RUN"
chown xpra-broker:xpra "$RUN"  # as the tmpfiles rule makes it for the unit
cat >"$CONF" <<EOF
socket = $SOCK
runtime-dir = $RUN
displays = 52900-52901
max-leases-per-user = 1
x11-tmp-dir = $SCRATCH/x11
xpra-config-dirs =
log-target = stderr
EOF
chmod 0644 "$CONF"
start_broker "$BROKER_LOG" "${UNIT_LIKE_START[@]}" -- --config="$CONF"
wait_for_socket "$SOCK" || { fail "broker did not start"; finish; }
reload() { "${UNIT_LIKE_START[@]}" "$XPB_BROKERD" --config="$CONF" --reload="$BROKER_PID"; }

# setpriv execs: $! is the client itself, which a kill below ends cleanly.
setpriv --reuid=xpb-alice --regid="$(id -g xpb-alice)" --init-groups "$XPB_CLIENT" --socket "$SOCK" exec -- sleep 120 &
HOLDER=$!
STARTED_PIDS+=("$HOLDER")
for _ in $(seq 50); do [[ $(client root list --all --json | grep -c '"display"') == 1 ]] && break; sleep 0.1; done
rc=0; client xpb-alice exec -- true >/dev/null 2>&1 || rc=$?
expect_eq "before: alice's second display refused for her quota (exec's 124)" 124 "$rc"

# Range, quota, rate, groups, log level; and socket, which needs a restart.
sed -i "s/^displays = .*/displays = 52905-52909/; s/^max-leases-per-user = .*/max-leases-per-user = 3/" "$CONF"
printf 'acquire-burst = 50\nallowed-groups = xpb-users\nlog-level = debug\nreap-grace-ms = 1000\n' >>"$CONF"
rc=0; out=$(reload 2>&1) || rc=$?
expect_eq "reload exit code" 0 "$rc"
log "reload said: $out"
for applied in displays=52905-52909 max-leases-per-user=3 acquire-burst=50 allowed-groups=xpb-users log-level=debug; do
  check "reload applied $applied" grep -q "applied: .*$applied" <<<"$out"
done
check "reload names reap-grace-ms as needing a restart" grep -q "needs a restart: reap-grace-ms=1000" <<<"$out"
check "the broker logged the reload" grep -q "reload: configuration re-read; applied:" "$BROKER_LOG"
status=$(client root status)
check "status shows the new range" grep -Eq '^displays +52905-52909,' <<<"$status"
check "the held lease is kept (on 52900, now outside the range)" \
  grep -q '"display": 52900' <<<"$(client root list --all --json)"
rc=0; client xpb-alice exec -- sh -c 'echo $XPRA_BROKER_DISPLAY' >"$SCRATCH/second" 2>&1 || rc=$?
expect_eq "after: alice's second display granted (quota 3)" 0 "$rc"
check "... from the new range" grep -Eq '^5290[5-9]$' "$SCRATCH/second"
rc=0; client xpb-mallory exec -- true >/dev/null 2>&1 || rc=$?
expect_eq "after: mallory, outside the new allowed-groups, denied (exec's 125)" 125 "$rc"
check "the new log level is in effect (debug lines)" grep -q "debug" "$BROKER_LOG"

# A configuration that does not load: the reload fails and changes nothing.
printf 'max-leases = lots\n' >>"$CONF"
bad_line=$(wc -l <"$CONF")
rc=0; out=$(reload 2>&1) || rc=$?
expect_eq "failed reload exit code" 78 "$rc"
log "failed reload said: $out"
check "it names the file and line" grep -q "$CONF:$bad_line" <<<"$out"
status=$(client root status)
check "status shows the failed reload to root" grep -q "the last configuration reload failed" <<<"$status"
check "... with the file and line" grep -q "$CONF:$bad_line" <<<"$status"
user_status=$(client xpb-alice status)
check "status does not show it to a user" bash -c '! grep -q "reload failed" <<<"$1"' _ "$user_status"
check "the range is still the one of the last good reload" grep -Eq '^displays +52905-52909,' <<<"$status"
# Fixed: the next reload works and the warning goes.
sed -i '$d' "$CONF"
rc=0; out=$(reload 2>&1) || rc=$?
expect_eq "reload after the fix" 0 "$rc"
status=$(client root status)
check "status no longer shows a failed reload" bash -c '! grep -q "reload failed" <<<"$1"' _ "$status"

# No broker at that pid: not a silent success.
rc=0; "$XPB_BROKERD" --config="$CONF" --reload=999999 >/dev/null 2>&1 || rc=$?
expect_eq "reload of a pid that is not running" 71 "$rc"
kill "$HOLDER" 2>/dev/null || true
wait "$HOLDER" 2>/dev/null || true  # its lease ends while the broker runs
stop_broker
finish
