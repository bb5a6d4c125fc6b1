#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every test:
#   ./scripts/test.sh
# Multi-user tests create real users and run Xvfb and xpra, so run it as root
# (CI does). Extra arguments go to ctest, e.g. ./scripts/test.sh -R unit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 "$@"
