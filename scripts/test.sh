#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every test:
#   ./scripts/test.sh
# Multi-user tests create real users and run Xvfb and xpra, so run it as root
# (CI does). Extra arguments go to ctest, e.g. ./scripts/test.sh -R unit;
# then only those tests run. Without them the unit tests also run under
# ASan+UBSan (scripts/test-sanitized.sh) and each fuzzer runs for
# $FUZZ_SECONDS (default 20) on its seeds (scripts/fuzz.sh), both from one
# sanitized clang tree (scripts/sanitized-tree.sh).
# The xpra-versions tests' ctest fixture builds Xpra 5.0.8 and 6.5.3 from
# ../shared/xpra-src once (scripts/build-xpra-versions.sh, cached by tarball
# hash in /var/cache/xpra-broker-tests; a full run starts that build in the
# background at once); without the sources they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh

sanitized_build_pid=
if [ $# -eq 0 ]; then
  # The sanitized tree compiles at the lowest CPU and I/O priority while the
  # main suite runs: its tests mostly wait on processes, sockets and timers,
  # and none of them asserts on wall time, so the two share the machine.
  mkdir -p "${FUZZ_BUILD_DIR:-build-fuzz}"
  sanitized_log=${FUZZ_BUILD_DIR:-build-fuzz}/build.log
  nice -n 19 ionice -c 3 bash -c 'source scripts/sanitized-tree.sh && configure_sanitized_tree &&
    cmake --build "$sanitized_build_dir" -j "$(nproc)" --target unit_tests core_tests login_protocol_test frame_decoder_fuzzer request_handler_fuzzer login_reply_fuzzer' \
    >"$sanitized_log" 2>&1 &
  sanitized_build_pid=$!
  # On a machine without the cached Xpra builds (CI's fresh machines), build
  # them now, beside the first tests, rather than in the xpra_versions_build
  # fixture while nothing else runs: the fixture then waits for this build's
  # lock and finds the cache filled (about 3 minutes less of CI).
  mkdir -p "${BUILD_DIR:-build}/tests"
  ./scripts/build-xpra-versions.sh --install-packages || [ $? -eq 3 ]
  nice -n 10 ./scripts/build-xpra-versions.sh >"${BUILD_DIR:-build}/tests/xpra-versions-background.log" 2>&1 &
fi

rc=0
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 "$@") || rc=$?

if [ -n "$sanitized_build_pid" ]; then
  if ! wait "$sanitized_build_pid"; then
    echo "test.sh: building the sanitized tree failed:" >&2
    tail -n 50 "$sanitized_log" >&2
    exit 1
  fi
  [ "$rc" -eq 0 ] || exit "$rc"
  ./scripts/test-sanitized.sh
  ./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
exit "$rc"
