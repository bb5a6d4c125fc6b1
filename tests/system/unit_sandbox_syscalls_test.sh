#!/usr/bin/env bash
# The unit's sandbox must not break the broker. systemd is not PID 1 here, so
# the sandbox cannot be applied for real; instead the broker runs (started as
# the unit starts it) under strace through a typical day: leases taken and
# ended, a lease whose holder is killed (its process is reaped with
# CAP_KILL), another user's stale X lock removed (CAP_FOWNER), status, and
# shutdown. Every system call it makes must be allowed by the unit's
# SystemCallFilter=@system-service, every socket must be AF_UNIX
# (RestrictAddressFamilies=AF_UNIX), and no mapping may be writable and
# executable (MemoryDenyWriteExecute=yes).
source "$(dirname "$0")/lib.sh"
require_root
command -v strace >/dev/null || skip "strace not installed"
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"
command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
make_scratch syscalls
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
TRACE=$SCRATCH/trace
X11=$SCRATCH/x11
install -d -m 0755 -o xpra-broker -g xpra "$RUN"

# The unit's filter, expanded from systemd's own group definitions.
systemd-analyze syscall-filter 2>/dev/null | awk -v group=@system-service '
  /^@/ { cur = $1; next }
  /^ *#/ { next }
  NF == 1 { members[cur] = members[cur] " " $1 }
  END {
    n = split(members[group], todo, " ")
    while (n > 0) {
      x = todo[n]; n--
      if (x in seen) continue
      seen[x] = 1
      if (x ~ /^@/) { m = split(members[x], more, " "); for (i = 1; i <= m; i++) todo[++n] = more[i] }
      else print x
    }
  }' | sort -u >"$SCRATCH/allowed"
check "@system-service expands to a syscall list" test "$(wc -l <"$SCRATCH/allowed")" -gt 100

start_broker "$BROKER_LOG" strace -f -qq -o "$TRACE" "${UNIT_LIKE_START[@]}" -- \
  --runtime-dir="$RUN" --socket="$SOCK" --displays=490-494 --x11-tmp-dir="$X11" --reap-grace-ms=500
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }
# strace forks the broker: signal the broker itself, then let strace finish.
STRACE_PID=$BROKER_PID
BROKER_PID=$(pgrep -P "$STRACE_PID" -n)
STARTED_PIDS+=("$BROKER_PID")

check "xpb-alice takes and ends a lease" client xpb-alice exec -- true
# A stale lock of xpb-bob's (dead pid) at the next display: removing it from
# the sticky dir needs CAP_FOWNER.
dead_pid=$(sh -c 'echo $$')
for d in $(seq 490 494); do
  printf '%10d\n' "$dead_pid" >"$X11/.X$d-lock"
  chown xpb-bob "$X11/.X$d-lock"
done
check "xpb-alice gets a display past the stale locks" client xpb-alice exec -- true
log "      stale locks left: $(cd "$X11" && ls -A | grep -c -- -lock || true) of 5"
# A holder killed with SIGKILL, its keeper too: the broker ends the lease and
# reaps the session itself (nothing else is left to end it).
# (Processes are found through their parents: other suites run as the same
# test users at the same time.)
runuser -u xpb-bob -- "$XPB_CLIENT" --socket "$SOCK" exec -- sleep 60 &
holder=$!  # runuser; its child is the client, then the keeper, then the session
STARTED_PIDS+=("$holder")
holder_client="" keeper="" sleeper=""
for _ in $(seq 1 50); do
  holder_client=$(pgrep -P "$holder" -n || true)
  [[ -n "$holder_client" ]] && keeper=$(pgrep -P "$holder_client" -n || true)
  [[ -n "$keeper" ]] && sleeper=$(pgrep -P "$keeper" -n || true)
  [[ -n "$sleeper" ]] && break
  sleep 0.1
done
check "xpb-bob's session is running" test -n "$sleeper"
# Gone, or a zombie nobody has collected yet (its parent was killed).
running() { [[ -e /proc/$1 ]] && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
# Neither may end the session before the broker does, or the broker would
# have nothing to signal: the client is stopped first (it would see its
# keeper die and end the session itself), and it is killed only once the
# keeper has died (a SIGKILLed process lives until it is scheduled to exit)
# and the session is the stopped client's child.
[[ -n "$holder_client" ]] && kill -STOP "$holder_client"
[[ -n "$keeper" ]] && kill -9 "$keeper"
for _ in $(seq 1 100); do
  [[ -n "$keeper" ]] && running "$keeper" && { sleep 0.05; continue; }
  [[ -n "$sleeper" && -n "$holder_client" ]] &&
    [[ "$(awk '{print $4}' "/proc/$sleeper/stat" 2>/dev/null)" != "$holder_client" ]] && { sleep 0.05; continue; }
  break
done
[[ -n "$holder_client" ]] && kill -9 "$holder_client"
# runuser stopped itself when its child stopped (as su does); it must go on
# to collect the killed client.
kill -CONT "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
for _ in $(seq 1 50); do [[ -n "$sleeper" ]] && running "$sleeper" || break; sleep 0.1; done
check "the killed holder's process was ended by the broker" bash -c "[[ -n '$sleeper' ]]" && ! running "$sleeper"
check "status" client xpb-alice status
stop_broker
wait "$STRACE_PID" 2>/dev/null || true

# System calls made after the broker's own execve.
exec_line=$(grep -n "execve(\"$XPB_BROKERD\"" "$TRACE" | grep "= 0" | head -1 | cut -d: -f1 || true)
check "trace contains the broker's execve" test -n "$exec_line"
tail -n +"${exec_line:-1}" "$TRACE" >"$SCRATCH/broker.trace"
sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p; s/^[0-9]+ +<\.\.\. ([a-z0-9_]+) resumed>.*/\1/p' "$SCRATCH/broker.trace" |
  sort -u >"$SCRATCH/used"
log "      system calls used: $(tr '\n' ' ' <"$SCRATCH/used")"
outside=$(comm -23 "$SCRATCH/used" "$SCRATCH/allowed" | tr '\n' ' ')
expect_eq "system calls outside @system-service" "" "$outside"
expect_eq "socket families other than AF_UNIX" "" \
  "$(grep -oE 'socket\(AF_[A-Z0-9]+' "$SCRATCH/broker.trace" | grep -v AF_UNIX | sort -u | tr '\n' ' ')"
expect_eq "writable+executable mappings" "" \
  "$(grep -E '^[0-9]+ +(mmap|mprotect|pkey_mprotect)\(' "$SCRATCH/broker.trace" | grep -E 'PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE' || true)"
expect_eq "namespace creation" "" "$(grep -E '^[0-9]+ +(unshare|setns)\(|CLONE_NEW' "$SCRATCH/broker.trace" || true)"
check "the trace includes the reaping (pidfd_send_signal)" grep -qx pidfd_send_signal "$SCRATCH/used"
check "the trace includes removing another user's lock (unlinkat)" grep -qx unlinkat "$SCRATCH/used"
finish
