#!/usr/bin/env bash
# The full test run: installs every package the tests need, builds, runs every test (unit and
# integration; integration tests start their own PostgreSQL, Redis, nginx and supervisord on
# 127.0.0.1). Exit status is ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/as-root.sh scripts/install-deps.sh
scripts/build.sh "$@"
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
# Two at a time: the machine has 2 cores, and integration tests time real processes.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 300
