#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in the
# sanitized build tree (./build-fuzz, or $FUZZ_BUILD_DIR; see sanitized-tree.sh) and runs each for SECONDS
# (default 60) on a copy of its seed corpus (fuzz/corpus/<target>/). Prints
# the executions run per target; exits non-zero if any target crashed, and
# keeps what crashed in <build dir>/fuzz-crashes/<target>/.
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]
# Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2" ./scripts/fuzz.sh 600
# Runs as root: the request handler hands directories to test uids.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder_fuzzer request_handler_fuzzer login_reply_fuzzer)
source "$(dirname "$0")/sanitized-tree.sh"
build_dir=$sanitized_build_dir
configure_sanitized_tree
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"

# Frames go up to 64 KiB plus a header; a handler scenario needs far less.
max_len() { case "$1" in frame_decoder_fuzzer | login_reply_fuzzer) echo 70000 ;; *) echo 16384 ;; esac; }

# The request handler counts X servers in /proc on every status request and
# probes host-wide abstract socket names: in a PID and network namespace of
# its own (when the host allows one) it sees only itself, is as fast on a
# busy host as on an idle one, and cannot meet a real X server.
isolate=()
if unshare --pid --fork --mount-proc --net true 2>/dev/null; then
  isolate=(unshare --pid --fork --mount-proc --net)
else
  echo "fuzz: cannot unshare PID/network namespaces; fuzzing on the host's /proc" >&2
fi

status=0
summary=()
for target in "${targets[@]}"; do
  corpus="$build_dir/fuzz-corpus/$target"
  crashes="$build_dir/fuzz-crashes/$target"
  log="$build_dir/fuzz-$target.log"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$crashes"
  cp fuzz/corpus/"$target"/* "$corpus"/
  echo "fuzz: $target for ${seconds}s (log: $log)"
  rc=0
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  "${isolate[@]}" "$build_dir/fuzz/$target" -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} "$corpus" \
    >"$log" 2>&1 || rc=$?
  runs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  if [ "$rc" -ne 0 ]; then
    status=1
    summary+=("$target: FAILED (exit $rc) after $runs executions; inputs kept in $crashes:")
    summary+=("$(ls -1 "$crashes" | sed 's/^/    /')")
    tail -n 40 "$log" >&2
  else
    summary+=("$target: $runs executions, nothing found")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
