#!/usr/bin/env bash
# pam_xpra_broker.so in a real PAM stack: a service file in /etc/pam.d that
# loads the built module by absolute path, driven by pamtester (and by
# pam_session_driver where pamtester cannot do it) for the real test users,
# against the real xpra-brokerd on a temporary runtime dir and socket.
#
# Usage: pam_session_test.sh CASE FIRST-LAST BROKERD REQUEST_DISPLAY MODULE DRIVER SYSLOG_SHIM
#   CASE         one of the functions case_* below
#   FIRST-LAST   this case's display numbers (inside the PAM suite's 400-449)
# Needs root (CI runs as root) and the users of tests/support/create-test-users.sh.
# The module's syslog lines are captured into a file by SYSLOG_SHIM (LD_PRELOAD).
set -euo pipefail

if [ $# -ne 7 ]; then
  echo "usage: $0 CASE FIRST-LAST BROKERD REQUEST_DISPLAY MODULE DRIVER SYSLOG_SHIM" >&2
  exit 64
fi
case_name=$1 displays=$2 brokerd=$3 request=$4 module=$5 driver=$6 shim=$7

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the PAM tests write /etc/pam.d and switch users; run them as root"
  exit 77
fi
command -v pamtester >/dev/null || { echo "FAIL: pamtester is not installed (scripts/install-deps.sh)"; exit 1; }
python=$(command -v /usr/bin/python3 || command -v python3) || { echo "FAIL: python3 is needed for the fake brokers"; exit 1; }

tmp=$(mktemp -d /tmp/xpb-pam-test.XXXXXX)
chmod 0755 "$tmp"  # the broker's user and the test users reach the socket through it
run_dir=$tmp/run
sock=$run_dir/broker.sock
syslog_file=$tmp/syslog
: >"$syslog_file"
pids=()          # background processes this script started
services=()      # /etc/pam.d files this script wrote
service_serial=0
SERVICE=

# --- plumbing --------------------------------------------------------------

# Our children only, never waited for before: their pids cannot have been reused.
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

stop_pid() {
  local pid=$1
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
      running "$pid" || break
      sleep 0.1
    done
    running "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

cleanup() {
  local rc=$?
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  if [ ${#services[@]} -gt 0 ]; then rm -f "${services[@]}"; fi
  if [ "$rc" -ne 0 ]; then
    echo "--- captured syslog of the module ---"
    cat "$syslog_file" 2>/dev/null
    if [ -f "$tmp/broker.log" ]; then
      echo "--- broker log ---"
      tail -n 60 "$tmp/broker.log"
    fi
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL [$case_name]: $*" >&2
  exit 1
}

note() { echo "[$case_name] $*"; }

now_ms() { date +%s%3N; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + limit * 1000))
  until "$@"; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.1
  done
}

# write_service OPTION...: a service file with only our module in the session
# stack; its name is left in $SERVICE.
write_service() {
  service_serial=$((service_serial + 1))
  SERVICE="xpra-broker-test-$case_name-$$-$service_serial"
  services+=("/etc/pam.d/$SERVICE")
  printf 'session required %s %s\n' "$module" "$*" >"/etc/pam.d/$SERVICE"
}

# Runs a PAM application with the module's syslog going to $syslog_file.
pam_run() { env LD_PRELOAD="$shim" XPB_SYSLOG_CAPTURE="$syslog_file" "$@"; }

# Runs a command as a test user. setpriv execs it, so in the background $! is
# the command itself.
as_user() {
  local user=$1
  shift
  setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups -- "$@"
}

broker_answers() { "$request" --socket "$sock" --timeout 2 status >/dev/null 2>&1; }

start_broker() {
  mkdir -p "$tmp/x11/.X11-unix"
  chmod 1777 "$tmp/x11" "$tmp/x11/.X11-unix"
  "$brokerd" --config=/dev/null --runtime-dir="$run_dir" --socket="$sock" --displays="$displays" \
    --x11-tmp-dir="$tmp/x11" --user=xpra-broker --group=xpra --log-level=debug >"$tmp/broker.log" 2>&1 &
  pids+=($!)
  wait_until 15 "the broker to answer on $sock" broker_answers
}

# Number of leases the broker lists for a user (as root: everyone's).
lease_count() {
  local json
  json=$("$request" --socket "$sock" list --all --json) || fail "xpra-request-display list --all failed"
  grep -c "\"user\": \"$1\"" <<<"$json" || true
}

has_leases() { [ "$(lease_count "$1")" -eq "$2" ]; }

# The user takes a display and holds it while a long sleep runs under it.
hold_lease() {
  local user=$1
  setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups -- \
    "$request" --socket "$sock" exec --grace 1 --purpose pam-test -- sleep 300 >"$tmp/lease-$user.log" 2>&1 &
  pids+=($!)
  wait_until 15 "a lease of $user" has_leases "$user" 1
}

expect_leases() {
  local n
  n=$(lease_count "$1")
  [ "$n" -eq "$2" ] || fail "$3: expected $2 lease(s) of $1, the broker lists $n"
}

expect_log() {
  grep -qE -- "$1" "$syslog_file" || fail "no syslog line matches /$1/ ($2)"
}

expect_no_log() {
  if grep -qE -- "$1" "$syslog_file"; then fail "unexpected syslog line matching /$1/ ($2)"; fi
}

user_dir() { echo "$run_dir/$(id -u "$1")"; }

# A held session: pam_session_driver --hold reading from a fifo on fd 7/8/...
# start_held_session NAME SERVICE USER: opens; finish_held_session NAME closes.
declare -A held_fd held_pid
start_held_session() {
  local name=$1 service=$2 user=$3 fifo=$tmp/hold-$1
  mkfifo "$fifo"
  env LD_PRELOAD="$shim" XPB_SYSLOG_CAPTURE="$syslog_file" "$driver" --hold "$service" "$user" \
    <"$fifo" >"$tmp/held-$name.out" 2>&1 &
  held_pid[$name]=$!
  pids+=($!)
  local fd
  exec {fd}>"$fifo"
  held_fd[$name]=$fd
  wait_until 15 "session $name to be open" grep -q '^holding' "$tmp/held-$name.out"
  grep -q '^open_session: PAM_SUCCESS' "$tmp/held-$name.out" ||
    fail "held session $name did not open: $(cat "$tmp/held-$name.out")"
}

finish_held_session() {
  local name=$1 fd=${held_fd[$1]}
  echo >&"$fd"
  exec {fd}>&-
  local rc=0
  wait "${held_pid[$name]}" || rc=$?
  forget_pid "${held_pid[$name]}"
  [ "$rc" -eq 0 ] || fail "held session $name ended with status $rc: $(cat "$tmp/held-$name.out")"
  grep -q '^close_session: PAM_SUCCESS' "$tmp/held-$name.out" || fail "held session $name did not close cleanly"
}

# pamtester SERVICE USER open_session close_session, one login session.
pamtester_login() {
  pam_run pamtester -v "$1" "$2" open_session close_session
}

# Silent broker: a Unix socket that accepts connections and never answers.
start_silent_broker() {
  mkdir -p "$run_dir"
  "$python" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(16)
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # read nothing, answer nothing, keep it open
' "$sock" &
  pids+=($!)
  wait_until 10 "the silent broker's socket" test -S "$sock"
}

# Scripted broker: answers every request with the frame REPLY-HEX and
# appends each request body it read, in hex, to $tmp/requests.
start_scripted_broker() {
  mkdir -p "$run_dir"
  : >"$tmp/requests"
  "$python" -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(16)
reply = bytes.fromhex(sys.argv[2])
def read(c, n):
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data
while True:
    c, _ = s.accept()
    try:
        body = read(c, struct.unpack(">I", read(c, 4))[0])
        with open(sys.argv[3], "a") as log:
            log.write(body.hex() + "\n")
        c.sendall(reply)
    except EOFError:
        pass
    c.close()
' "$sock" "$1" "$tmp/requests" &
  pids+=($!)
  wait_until 10 "the scripted broker's socket" test -S "$sock"
}

# The protobuf varint of $1, in hex (what the module encodes a uid as).
varint_hex() { "$python" -c 'import sys
v = int(sys.argv[1]); out = b""
while v >= 0x80: out += bytes([v & 0x7f | 0x80]); v >>= 7
print((out + bytes([v])).hex())' "$1"; }

# Full backlog: a listener that never accepts, its backlog already full.
start_full_backlog_broker() {
  mkdir -p "$run_dir"
  "$python" -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + ".tmp"); s.listen(0)
fillers = []
while True:  # fill the backlog until a connect would have to wait
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.setblocking(False)
    try:
        c.connect(sys.argv[1] + ".tmp")
    except BlockingIOError:
        break
    fillers.append(c)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
' "$sock" &
  pids+=($!)
  wait_until 10 "the full-backlog socket" test -S "$sock"
}

# Runs "$@", sets $elapsed_ms and $status.
timed() {
  local start
  start=$(now_ms)
  status=0
  "$@" || status=$?
  elapsed_ms=$(($(now_ms) - start))
}

# --- cases -----------------------------------------------------------------

# open_session prepares the directory; with reap=no a lease outlives logout.
case_open_close_keep() {
  start_broker
  write_service "socket=$sock" timeout=2000 reap=no debug
  local bob_dir
  bob_dir=$(user_dir xpb-bob)
  [ ! -e "$bob_dir" ] || fail "$bob_dir exists before bob ever logged in"
  pamtester_login "$SERVICE" xpb-bob || fail "pamtester open/close for xpb-bob failed"
  [ -d "$bob_dir" ] || fail "open_session did not create $bob_dir"
  local got
  got=$(stat -c '%U %G %a' "$bob_dir")
  [ "$got" = "xpb-bob xpra 770" ] || fail "$bob_dir is '$got', expected 'xpb-bob xpra 770'"

  hold_lease xpb-alice
  pamtester_login "$SERVICE" xpb-alice || fail "pamtester open/close for xpb-alice failed"
  expect_leases xpb-alice 1 "reap=no keeps leases at the last logout"
  expect_log "user=xpb-alice uid=[0-9]+: last login session ended, 0 lease\(s\) ended \(reap=no\)" "close reported"
  note "ok: directory prepared ($got), lease kept with reap=no"
}

# With reap=yes the last logout ends the user's leases, and only that user's.
case_open_close_reap() {
  start_broker
  write_service "socket=$sock" timeout=2000 reap=yes
  hold_lease xpb-alice
  hold_lease xpb-bob
  pamtester_login "$SERVICE" xpb-alice || fail "pamtester open/close for xpb-alice failed"
  wait_until 10 "alice's lease to end" has_leases xpb-alice 0
  expect_leases xpb-bob 1 "bob did not log out"
  expect_log "user=xpb-alice uid=[0-9]+: last login session ended, 1 lease\(s\) ended \(reap=yes\)" "reap reported"
  note "ok: alice's lease ended at her last logout, bob's kept"
}

# The session gets the broker's directory in its environment.
case_session_environment() {
  start_broker
  write_service "socket=$sock"
  local out dir
  dir=$(user_dir xpb-alice)
  out=$(pam_run "$driver" --print-env "$SERVICE" xpb-alice) || fail "driver failed: $out"
  grep -qx "env XPRA_BROKER_RUNTIME_DIR=$dir" <<<"$out" || fail "XPRA_BROKER_RUNTIME_DIR not exported: $out"
  grep -qx "env XPRA_SOCKET_DIRS=$dir" <<<"$out" || fail "XPRA_SOCKET_DIRS not exported: $out"
  note "ok: XPRA_BROKER_RUNTIME_DIR and XPRA_SOCKET_DIRS = $dir"
}

# Two overlapping sessions of one user: only the end of the last one reaps.
case_overlapping_sessions() {
  start_broker
  write_service "socket=$sock" reap=yes debug
  hold_lease xpb-alice
  start_held_session first "$SERVICE" xpb-alice
  pamtester_login "$SERVICE" xpb-alice || fail "second session of xpb-alice failed"
  expect_log "user=xpb-alice uid=[0-9]+: login session closed, 1 login session\(s\) left" "second close counted"
  expect_leases xpb-alice 1 "the first session is still open"
  finish_held_session first
  wait_until 10 "alice's lease to end after her last session" has_leases xpb-alice 0
  note "ok: 2 sessions counted; lease ended only when the last closed"
}

# Many sessions of two users at once, while one session of alice stays open.
case_concurrent_sessions() {
  start_broker
  write_service "socket=$sock" reap=yes
  hold_lease xpb-alice
  hold_lease xpb-bob
  start_held_session anchor "$SERVICE" xpb-alice
  local runs=() i rc
  for i in $(seq 8); do
    pamtester_login "$SERVICE" xpb-alice >"$tmp/conc-alice-$i.out" 2>&1 &
    runs+=($!)
    pamtester_login "$SERVICE" xpb-bob >"$tmp/conc-bob-$i.out" 2>&1 &
    runs+=($!)
  done
  for i in "${runs[@]}"; do
    rc=0
    wait "$i" || rc=$?
    [ "$rc" -eq 0 ] || fail "a concurrent pamtester run failed (status $rc): $(cat "$tmp"/conc-*.out)"
  done
  expect_leases xpb-alice 1 "alice's anchor session is still open"
  wait_until 10 "bob's lease to end after all his sessions" has_leases xpb-bob 0
  finish_held_session anchor
  wait_until 10 "alice's lease to end after her last session" has_leases xpb-alice 0
  note "ok: 16 concurrent logins counted correctly"
}

# Open and close on different handles in different processes, as a daemon
# that is not the session's parent does.
case_separate_processes() {
  start_broker
  write_service "socket=$sock" reap=yes
  hold_lease xpb-alice
  local out
  out=$(pam_run "$driver" --mode open "$SERVICE" xpb-alice) || fail "open in process 1 failed: $out"
  expect_leases xpb-alice 1 "only opened so far"
  out=$(pam_run "$driver" --mode close "$SERVICE" xpb-alice) || fail "close in process 2 failed: $out"
  wait_until 10 "alice's lease to end" has_leases xpb-alice 0
  note "ok: close from another process ended the session"
}

# One long-lived process (JupyterHub's pamela does this) runs pam_start ..
# pam_end many times; the module leaves no thread, fd, signal handler or
# mapping (it is unloaded at each pam_end and loaded again).
case_repeated_load() {
  start_broker
  write_service "socket=$sock"
  local out before after
  out=$(pam_run "$driver" --process-state --repeat 25 "$SERVICE" xpb-alice) || fail "repeated cycles failed: $out"
  [ "$(grep -c '^open_session: PAM_SUCCESS' <<<"$out")" -eq 25 ] || fail "not all 25 opens succeeded: $out"
  [ "$(grep -c '^close_session: PAM_SUCCESS' <<<"$out")" -eq 25 ] || fail "not all 25 closes succeeded: $out"
  before=$(sed -n 's/^process-state before: //p' <<<"$out")
  after=$(sed -n 's/^process-state after: //p' <<<"$out")
  [ -n "$before" ] && [ "$before" = "$after" ] || fail "process state changed: before '$before', after '$after'"
  grep -q '^threads=1 ' <<<"$after" || fail "threads left behind: $after"
  # Unloaded by each pam_end (no -z nodelete), loaded afresh by the next pam_start.
  grep -q ' module_mappings=0$' <<<"$after" || fail "the module stays mapped after pam_end: $after"
  # The same with the broker down: the error paths clean up too.
  write_service "socket=$tmp/nonexistent.sock" fail=open
  out=$(pam_run "$driver" --process-state --repeat 10 "$SERVICE" xpb-alice) || fail "cycles with the broker down failed: $out"
  before=$(sed -n 's/^process-state before: //p' <<<"$out")
  after=$(sed -n 's/^process-state after: //p' <<<"$out")
  [ "$before" = "$after" ] || fail "process state changed on the error path: before '$before', after '$after'"
  note "ok: 35 pam_start/open/close/pam_end cycles in one process; state unchanged ($after)"
}

# Only root may act for a login user; a non-root caller is refused by the
# broker, and the module says why.
case_non_root_caller() {
  start_broker
  chown xpb-bob "$syslog_file"
  write_service "socket=$sock" fail=open
  local open_service=$SERVICE out
  out=$(as_user xpb-bob env LD_PRELOAD="$shim" XPB_SYSLOG_CAPTURE="$syslog_file" \
    "$driver" --mode open "$open_service" xpb-bob) || fail "fail=open refused a non-root caller: $out"
  expect_log "user=xpb-bob uid=[0-9]+: open_login failed: the broker refused \(DENIED\).*must run as root" "denied"
  write_service "socket=$sock" fail=closed
  local rc=0
  out=$(as_user xpb-bob env LD_PRELOAD="$shim" XPB_SYSLOG_CAPTURE="$syslog_file" \
    "$driver" --mode open "$SERVICE" xpb-bob) || rc=$?
  grep -q '^open_session: PAM_SESSION_ERR' <<<"$out" || fail "fail=closed let a non-root caller through: $out"
  note "ok: non-root caller refused by the broker, reported"
}

case_broker_down_fail_open() {
  write_service "socket=$sock" fail=open debug
  pamtester_login "$SERVICE" xpb-alice || fail "fail=open refused the login with the broker down"
  expect_log "<4> .*user=xpb-alice uid=[0-9]+: open_login failed: cannot connect to the broker at $sock \(No such file or directory\); login continues without a broker directory \(fail=open\)" "warning"
  expect_log "nothing to close" "close skipped for an uncounted open"
  expect_no_log "close_login failed" "close must not be attempted"
  note "ok: broker down, login let through with a warning"
}

case_broker_down_fail_closed() {
  write_service "socket=$sock" fail=closed
  if pamtester_login "$SERVICE" xpb-alice; then fail "fail=closed let the login through with the broker down"; fi
  expect_log "<3> .*user=xpb-alice uid=[0-9]+: open_login failed: cannot connect to the broker.*session refused \(fail=closed\)" "error"
  local out
  out=$(pam_run "$driver" --mode open "$SERVICE" xpb-alice) && fail "driver: open succeeded with fail=closed"
  grep -q '^open_session: PAM_SESSION_ERR' <<<"$out" || fail "expected PAM_SESSION_ERR: $out"
  note "ok: broker down, session refused"
}

# A broker that accepts and never answers: the login waits timeout=, no more.
case_silent_broker_timeout() {
  start_silent_broker
  write_service "socket=$sock" timeout=500 fail=closed
  timed pamtester_login "$SERVICE" xpb-alice
  [ "$status" -ne 0 ] || fail "fail=closed let the login through a silent broker"
  [ "$elapsed_ms" -lt 10000 ] || fail "pamtester took ${elapsed_ms} ms with timeout=500 (hang)"
  expect_log "user=xpb-alice uid=[0-9]+: open_login failed: the broker did not answer in time at $sock \(timeout=500 ms\); session refused" "timeout"
  note "fail=closed: refused after ${elapsed_ms} ms"
  write_service "socket=$sock" timeout=500 fail=open
  timed pamtester_login "$SERVICE" xpb-alice
  [ "$status" -eq 0 ] || fail "fail=open refused the login with a silent broker"
  [ "$elapsed_ms" -lt 10000 ] || fail "pamtester took ${elapsed_ms} ms with timeout=500 (hang)"
  note "ok: fail=open: let through after ${elapsed_ms} ms"
}

# A broker that never even accepts (backlog full): the connect is bounded too.
case_full_backlog_timeout() {
  start_full_backlog_broker
  write_service "socket=$sock" timeout=500 fail=closed
  timed pamtester_login "$SERVICE" xpb-alice
  [ "$status" -ne 0 ] || fail "fail=closed let the login through a broker that never accepts"
  [ "$elapsed_ms" -lt 10000 ] || fail "pamtester took ${elapsed_ms} ms with timeout=500 (hang)"
  expect_log "user=xpb-alice uid=[0-9]+: open_login failed: .*session refused \(fail=closed\)" "refused"
  note "ok: refused after ${elapsed_ms} ms: $(grep -o 'open_login failed: [^;]*' "$syslog_file" | head -n1)"
}

# A reply that is not a well-formed protobuf message: refused with the
# decoder's reason, never trusted (the frame says 4 bytes; open_login's
# length says 5).
case_malformed_reply() {
  start_scripted_broker 0000000408017205
  write_service "socket=$sock" fail=closed
  if pamtester_login "$SERVICE" xpb-alice; then fail "fail=closed let the login through a malformed reply"; fi
  expect_log "<3> .*user=xpb-alice uid=[0-9]+: open_login failed: the broker sent a malformed reply at $sock \(a field's length runs past the end of the frame\); session refused \(fail=closed\)" "malformed"
  note "ok: malformed reply refused: $(grep -o 'open_login failed: [^;]*' "$syslog_file" | head -n1)"
}

# The broker answers OK with a directory no login environment should get (a
# newline in it): with fail=closed the session is refused and the count the
# broker just took is given back with close_login (reap no), which the
# scripted broker sees byte for byte.
case_unusable_directory() {
  # Response{status OK, open_login{runtime_dir "/run/x\ny", login_sessions 1}}
  start_scripted_broker 000000100801720c0a082f72756e2f780a791001
  write_service "socket=$sock" fail=closed
  if pamtester_login "$SERVICE" xpb-alice; then fail "fail=closed let the login through an unusable directory"; fi
  expect_log "<3> .*user=xpb-alice uid=[0-9]+: the broker replied with an unusable directory '/run/x\?y'; session refused" "unusable"
  local uid_hex open close
  uid_hex=$(varint_hex "$(id -u xpb-alice)")
  open=$(printf '72%02x08%s' $((1 + ${#uid_hex} / 2)) "$uid_hex")
  close=$(printf '7a%02x08%s' $((1 + ${#uid_hex} / 2)) "$uid_hex")
  [ "$(cat "$tmp/requests")" = "$(printf '%s\n%s' "$open" "$close")" ] ||
    fail "expected open_login then close_login (reap no) of uid $(id -u xpb-alice): '$open' '$close'; the broker read: $(tr '\n' ' ' <"$tmp/requests")"
  note "ok: unusable directory refused, the count given back: $(tr '\n' ' ' <"$tmp/requests")"
}

# A wrong service file is an error with a clear log line, whatever fail= says.
case_bad_options() {
  write_service "socket=$sock" bogus_option timeout=abc fail=open
  local out rc=0
  out=$(pam_run "$driver" --mode open "$SERVICE" xpb-alice) || rc=$?
  grep -q '^open_session: PAM_SERVICE_ERR' <<<"$out" || fail "bad options did not give PAM_SERVICE_ERR: $out"
  expect_log "<3> .*user=xpb-alice: configuration error in the service file: unknown option 'bogus_option'; known options: socket=PATH" "unknown option"
  expect_log "<3> .*user=xpb-alice: configuration error in the service file: bad option 'timeout=abc': timeout must be a whole number of milliseconds" "bad value"
  if pamtester_login "$SERVICE" xpb-alice 2>"$tmp/pamtester.err"; then fail "pamtester succeeded with bad options"; fi
  note "ok: PAM_SERVICE_ERR; pamtester says: $(tr '\n' ' ' <"$tmp/pamtester.err")"
}

declare -F "case_$case_name" >/dev/null || fail "unknown case '$case_name'"
"case_$case_name"
