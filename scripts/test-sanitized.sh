#!/usr/bin/env bash
# The unit tests under AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, in the sanitized clang tree that the fuzzers
# share (./build-fuzz, or $FUZZ_BUILD_DIR; see sanitized-tree.sh). Any
# sanitizer report fails the run.
#   ./scripts/test-sanitized.sh [ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/sanitized-tree.sh
configure_sanitized_tree
cmake --build "$sanitized_build_dir" -j "$(nproc)" --target unit_tests core_tests login_protocol_test
cd "$sanitized_build_dir"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# The unit tests share nothing between them (each works in its own temporary
# directory), so both cores run them.
ctest --output-on-failure --timeout 600 -j "$(nproc)" -L "unit|core" "$@"
