#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every test:
#   ./scripts/test.sh
# Multi-user tests create real users and run Xvfb and xpra, so run it as root
# (CI does). Extra arguments go to ctest, e.g. ./scripts/test.sh -R unit;
# then only those tests run. Without them the unit tests also run under
# ASan+UBSan (scripts/test-sanitized.sh) and each fuzzer runs for
# $FUZZ_SECONDS (default 20) on its seeds (scripts/fuzz.sh), each in a build
# tree of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 "$@")
if [ $# -eq 0 ]; then
  ./scripts/test-sanitized.sh
  ./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
