#!/usr/bin/env bash
# The unit tests under AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, in their own build tree (./build-asan, or
# $ASAN_BUILD_DIR). Any sanitizer report fails the run.
#   ./scripts/test-sanitized.sh [ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${ASAN_BUILD_DIR:-build-asan}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O0 with line tables only: CI compiles this tree afresh every time, and
# that takes a third of the CPU time of -O2 -g; stack traces keep file:line.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target unit_tests
cd "$build_dir"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
ctest --output-on-failure --timeout 600 -L unit "$@"
