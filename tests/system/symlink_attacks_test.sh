#!/usr/bin/env bash
# A symlink planted where someone other than the broker can write must never
# make the broker chown, chmod, unlink or open through it:
#   1. <runtime-dir>/<uid> planted before the user's first request
#   2. <runtime-dir>/broker.lock and leases.journal, 3. the socket path,
#   4. the runtime dir itself (planted before start-up; the broker must refuse
#      to start)
#   5. in the X11 tmp dir (sticky, world-writable like /tmp) and in the user's
#      own directory, at the lock and socket names of the user's display,
#      cleaned up by the broker when the lease ends.
# Every target is compared before and after.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch symlinks
RUN=$SCRATCH/run
SOCK=$RUN/broker.sock
BROKER_LOG=$SCRATCH/broker.log
ARGS=(--user=xpra-broker --group=xpra --runtime-dir="$RUN" --socket="$SOCK" --displays=480-484
  --x11-tmp-dir="$SCRATCH/x11")

# Targets: a root-only directory and file outside every dir the broker uses.
VICTIMS=$SCRATCH/victims
install -d -m 0755 "$VICTIMS"
install -d -m 0700 -o root -g root "$VICTIMS/dir"
printf 'root secret\n' >"$VICTIMS/file"
chmod 0600 "$VICTIMS/file"
victim_dir_before=$(fingerprint "$VICTIMS/dir")
victim_file_before=$(fingerprint "$VICTIMS/file")
victims_unchanged() {
  expect_eq "$1: target dir unchanged" "$victim_dir_before" "$(fingerprint "$VICTIMS/dir")"
  expect_eq "$1: target file unchanged" "$victim_file_before" "$(fingerprint "$VICTIMS/file")"
  check "$1: nothing created in the target dir" test -z "$(ls -A "$VICTIMS/dir")"
}

# --- 2, 3, 4: planted before start-up ------------------------------------
install -d -m 0755 -o xpra-broker -g xpra "$RUN"
expect_refusal() {  # expect_refusal WHAT: the broker must exit by itself, not serve
  start_broker "$BROKER_LOG" -- "${ARGS[@]}"
  wait_for_exit "$BROKER_PID" 10
  if [[ "$EXIT_CODE" == 124 ]]; then
    fail "$1: the broker started anyway"
    stop_broker
  else
    expect_eq "$1: broker exit code" 78 "$EXIT_CODE"
  fi
  log "      broker said: $(grep -m1 critical "$BROKER_LOG" || true)"
}

ln -s "$VICTIMS/file" "$RUN/broker.lock"
expect_refusal "broker.lock -> root's file"
victims_unchanged "broker.lock -> root's file"
check "broker.lock is still the planted symlink" test -L "$RUN/broker.lock"
rm "$RUN/broker.lock"

ln -s "$VICTIMS/no-such-file" "$RUN/broker.lock"
expect_refusal "broker.lock -> missing file"
check "the dangling target was not created" test ! -e "$VICTIMS/no-such-file"
rm "$RUN/broker.lock"

ln -s "$VICTIMS/file" "$RUN/leases.journal"
expect_refusal "leases.journal -> root's file"
victims_unchanged "leases.journal -> root's file"
check "leases.journal is still the planted symlink" test -L "$RUN/leases.journal"
rm "$RUN/leases.journal"

ln -s "$VICTIMS/file" "$SOCK"
expect_refusal "socket path -> root's file"
victims_unchanged "socket path -> root's file"
check "the socket path is still the planted symlink" test -L "$SOCK"
rm "$SOCK"

rm -rf "$RUN"
ln -s "$VICTIMS/dir" "$RUN"
expect_refusal "runtime dir -> root's dir"
victims_unchanged "runtime dir -> root's dir"
rm "$RUN"

# --- 1: <runtime-dir>/<uid> planted before the first request --------------
start_broker "$BROKER_LOG" -- "${ARGS[@]}"
wait_for_socket "$SOCK" || { cat "$BROKER_LOG" >&2; fail "broker did not start"; finish; }
alice_uid=$(uid_of xpb-alice)
ln -s "$VICTIMS/dir" "$RUN/$alice_uid"
rc=0
client xpb-alice exec -- true 2>"$SCRATCH/alice.err" || rc=$?
check "xpb-alice's request fails while a symlink is in the way (exit $rc)" test "$rc" -ne 0
victims_unchanged "<runtime-dir>/<uid> -> root's dir"
check "the planted symlink is left alone" test -L "$RUN/$alice_uid"
rm "$RUN/$alice_uid"
check "xpb-alice is served once it is gone" client xpb-alice exec -- true

# --- 5: planted by the user at her display's lock and socket names ---------
# A process of xpb-alice's that is not part of the lease, and a root-owned
# file naming it as if it were an X server's lock: if the broker read the
# planted lock through the symlink it would end that process.
runuser -u xpb-alice -- sleep 300 &
bystander=$!
STARTED_PIDS+=("$bystander")
sleep 0.2
bystander_pid=$(pgrep -P "$bystander" -x sleep || echo "$bystander")
printf '%10d\n' "$bystander_pid" >"$VICTIMS/lockfile"
chmod 0644 "$VICTIMS/lockfile"
lockfile_before=$(fingerprint "$VICTIMS/lockfile")
host=$(hostname)
# Inside the lease: plant links at every name the broker cleans for this display.
plant='d=${DISPLAY#:}; v='"$VICTIMS"'
ln -s "$v/lockfile" "'"$SCRATCH"'/x11/.X$d-lock"
ln -s "$v/file" "'"$SCRATCH"'/x11/.X11-unix/X$d"
ln -s "$v/file" "$XPRA_BROKER_RUNTIME_DIR/'"$host"'-$d"
ln -s "$v/dir" "$XPRA_BROKER_RUNTIME_DIR/'"$host"'-$d.d"
echo "$d"'
display=$(client xpb-alice exec -- sh -c "$plant") || fail "xpb-alice could not plant links inside a lease"
log "      planted links for display :$display"
sleep 1  # the lease ends when exec returns; give the broker time to clean up
victims_unchanged "links at display :$display's lock and socket names"
expect_eq "root's lock-like file unchanged" "$lockfile_before" "$(fingerprint "$VICTIMS/lockfile")"
check "xpb-alice's unrelated process was not signalled" kill -0 "$bystander_pid"
# Whatever the broker did with the links (removed them or left them), they
# must still be links if present, never replaced by something else.
for p in "$SCRATCH/x11/.X$display-lock" "$SCRATCH/x11/.X11-unix/X$display" "$RUN/$alice_uid/$host-$display"; do
  log "      after the lease: $p: $(stat -c %F "$p" 2>&1)"
  check "$p: absent or still a symlink" bash -c "[[ ! -e '$p' && ! -L '$p' ]] || [[ -L '$p' ]]"
done
# The next users of the range must still be served (a planted link never
# wedges the broker).
check "xpb-bob is served after the planted links" client xpb-bob exec -- true

stop_broker
finish
