# Sourced by test-sanitized.sh and fuzz.sh: one clang build tree with
# AddressSanitizer and UndefinedBehaviorSanitizer (and libFuzzer's coverage
# instrumentation) serves both the sanitized unit tests and the fuzzers, so
# CI compiles the broker only once more, not twice. -O1 with line tables: a
# third of the compile time of -O2 -g, still fast to fuzz, and stack traces
# keep file:line.
sanitized_build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
configure_sanitized_tree() {
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  CC=clang CXX=clang++ cmake -S . -B "$sanitized_build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DXPRA_BROKER_FUZZ=ON -DBUILD_TESTING=ON "${launcher[@]}" >/dev/null
}
