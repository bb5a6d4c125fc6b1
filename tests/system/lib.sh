# Shared helpers for the system tests (sourced, not run). The tests run as
# root with the real test users (fixture test_users) and start the real
# xpra-brokerd the way the systemd unit or an init script would.
#
# Environment (set by tests/system/CMakeLists.txt):
#   XPB_BROKERD, XPB_CLIENT   the built xpra-brokerd and xpra-request-display
#   XPB_SOURCE_DIR            the source tree
#   XPB_BUILD_DIR             the build tree under test
set -euo pipefail

readonly CAP_MASK_BROKER=0000000000000029  # CAP_CHOWN(0) | CAP_FOWNER(3) | CAP_KILL(5)
readonly CAP_MASK_NONE=0000000000000000

FAILURES=0
SCRATCH=""
STARTED_PIDS=()

log() { printf '%s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  FAILURES=$((FAILURES + 1))
}
pass() { log "ok:   $*"; }
skip() {
  log "SKIP: $*"
  exit 77
}
check() {  # check DESCRIPTION COMMAND...: records a failure instead of exiting
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
expect_eq() {  # expect_eq DESCRIPTION EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then pass "$1 = $3"; else fail "$1: expected '$2', got '$3'"; fi
}
finish() {
  if ((FAILURES > 0)); then
    log "$FAILURES check(s) failed"
    exit 1
  fi
  log "all checks passed"
  exit 0
}

require_root() { [[ $(id -u) == 0 ]] || skip "needs root (creates users, starts the broker as root)"; }

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$SCRATCH" && -d "$SCRATCH" ]]; then
    # Leftover symlinks are removed, never followed (rm -rf does not follow).
    rm -rf --one-file-system "$SCRATCH"
  fi
}
trap cleanup EXIT

# A scratch dir every test user can traverse (the broker runs as xpra-broker,
# the clients as the test users), like /run.
make_scratch() {
  SCRATCH=$(mktemp -d "/tmp/xpb-system.$1.XXXXXX")
  chmod 0755 "$SCRATCH"
  # An X11 tmp dir like /tmp: sticky and world-writable, with .X11-unix.
  mkdir -m 1777 "$SCRATCH/x11" "$SCRATCH/x11/.X11-unix"
  chmod 1777 "$SCRATCH/x11" "$SCRATCH/x11/.X11-unix"
}

uid_of() { id -u "$1"; }
gid_of_group() { getent group "$1" | cut -d: -f3; }

# start_broker LOG PREFIX_CMD... -- BROKER_ARGS...: starts the broker (prefixed
# by e.g. setpriv, which execs, so $! is the broker itself) and sets
# BROKER_PID. Does not wait; see wait_for_socket.
start_broker() {
  local logfile=$1
  shift
  local prefix=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do
    prefix+=("$1")
    shift
  done
  shift  # --
  "${prefix[@]}" "$XPB_BROKERD" "$@" >"$logfile" 2>&1 &
  BROKER_PID=$!
  STARTED_PIDS+=("$BROKER_PID")
}

# wait_for_socket PATH: until the broker serves (its "serving" log line and a
# socket), or it exits. Returns 1 if it exited.
wait_for_socket() {
  local sock=$1 i
  for i in $(seq 1 100); do
    if [[ -S "$sock" ]] && grep -q "serving" "$BROKER_LOG" 2>/dev/null; then return 0; fi
    kill -0 "$BROKER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  log "broker did not start within 10 s; its log:"
  cat "$BROKER_LOG" >&2
  return 1
}

# wait_for_exit PID SECONDS: waits for a broker expected to stop by itself
# (refusing to start); sets EXIT_CODE to its status, or 124 if still running.
wait_for_exit() {
  local pid=$1 secs=$2 i
  EXIT_CODE=124
  for i in $(seq 1 $((secs * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      EXIT_CODE=0
      wait "$pid" || EXIT_CODE=$?
      return 0
    fi
    sleep 0.1
  done
}

stop_broker() {
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
}

status_field() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"; }
status_line() { awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print; exit }' "/proc/$1/status"; }

# as_user USER CMD...: run a command as a test user with that user's groups.
as_user() {
  local user=$1
  shift
  runuser -u "$user" -- "$@"
}

# client USER ARGS...: xpra-request-display as USER against $SOCK.
client() {
  local user=$1
  shift
  if [[ "$user" == root ]]; then
    "$XPB_CLIENT" --socket "$SOCK" "$@"
  else
    as_user "$user" "$XPB_CLIENT" --socket "$SOCK" "$@"
  fi
}

# The identity and capabilities the design promises for a broker started
# either way (root with --user/--group, or as the unit starts it).
check_broker_credentials() {
  local pid=$1 label=$2 broker_uid broker_gid
  broker_uid=$(uid_of xpra-broker)
  broker_gid=$(gid_of_group xpra)
  expect_eq "$label Uid (real, effective, saved, fs)" "$broker_uid $broker_uid $broker_uid $broker_uid" \
    "$(status_line "$pid" Uid | tr -s '\t ' ' ')"
  expect_eq "$label Gid (real, effective, saved, fs)" "$broker_gid $broker_gid $broker_gid $broker_gid" \
    "$(status_line "$pid" Gid | tr -s '\t ' ' ')"
  expect_eq "$label CapInh" "$CAP_MASK_NONE" "$(status_field "$pid" CapInh)"
  expect_eq "$label CapPrm" "$CAP_MASK_BROKER" "$(status_field "$pid" CapPrm)"
  expect_eq "$label CapEff" "$CAP_MASK_NONE" "$(status_field "$pid" CapEff)"
  expect_eq "$label CapBnd" "$CAP_MASK_BROKER" "$(status_field "$pid" CapBnd)"
  expect_eq "$label CapAmb" "$CAP_MASK_NONE" "$(status_field "$pid" CapAmb)"
  expect_eq "$label NoNewPrivs" "1" "$(status_field "$pid" NoNewPrivs)"
  if command -v capsh >/dev/null; then
    log "      decoded: CapPrm $(capsh --decode="$(status_field "$pid" CapPrm)")," \
      "CapBnd $(capsh --decode="$(status_field "$pid" CapBnd)")"
  fi
}

# The unit's privilege settings, reproduced with setpriv (util-linux) for a
# sandbox without systemd as PID 1: User=xpra-broker, Group=xpra,
# AmbientCapabilities= and CapabilityBoundingSet= chown,fowner,kill,
# NoNewPrivileges=yes. systemd also sets the user's supplementary groups.
UNIT_LIKE_START=(setpriv --reuid=xpra-broker --regid=xpra --init-groups
  --inh-caps=-all,+chown,+fowner,+kill --ambient-caps=-all,+chown,+fowner,+kill
  --bounding-set=-all,+chown,+fowner,+kill --no-new-privs)

# Files as `stat` sees them, for before/after comparisons of planted targets.
fingerprint() {
  local sum=""
  [[ -f "$1" && ! -L "$1" ]] && sum=$(md5sum <"$1" | cut -d' ' -f1)
  echo "$(stat -c '%F %u:%g %a %s mtime=%Y ctime=%Z ino=%i' "$1" 2>&1) $sum"
}

# copy_source_tree DEST: the source tree under test (what git tracks, plus
# new files not ignored), without build trees, for package builds that write
# into their source (dpkg-buildpackage) or pack it (rpmbuild).
copy_source_tree() {
  local dest=$1 f
  mkdir -p "$dest"
  if git -C "$XPB_SOURCE_DIR" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$XPB_SOURCE_DIR" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do if [[ -e $f ]]; then printf '%s\0' "$f"; fi; done |
      xargs -0 cp --parents -t "$dest")
  else
    tar -C "$XPB_SOURCE_DIR" --exclude='./build*' -cf - . | tar -C "$dest" -xf -
  fi
}

# Where system.package_deb_build leaves the .debs for the install and
# lintian tests (CTest fixture deb_packages): N/ and N1/ (the same source
# with a newer changelog entry, for the upgrade).
DEB_AREA=$XPB_BUILD_DIR/tests/system/deb
