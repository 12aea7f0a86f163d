#!/usr/bin/env bash
# The full test run: installs every package the tests need, builds, runs every test (unit and
# integration; integration tests start their own PostgreSQL, Redis, nginx and supervisord on
# 127.0.0.1), after fuzzing every parser that faces the network or a file for a bounded time
# (scripts/fuzz.sh; VIGIL_FUZZ_SECONDS per harness, default 12: fifteen harnesses, two at a time,
# keep the run well under 30 minutes). Exit status: ctest's, or 1 when the fuzzing found anything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/as-root.sh scripts/install-deps.sh
scripts/build.sh "$@"
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
# Fuzzing first, so that ctest's summary closes the run.
fuzz_status=0
scripts/fuzz.sh "${VIGIL_FUZZ_SECONDS:-12}" || fuzz_status=$?
# Two at a time: the machine has 2 cores, and integration tests time real processes.
# The fleet deployment test (label deploy: Ansible over SSH to three namespace hosts, about half
# an hour here) runs on its own: scripts/test-deploy.sh.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 300 -LE deploy
if [ "$fuzz_status" != 0 ]; then
  echo "test: scripts/fuzz.sh failed (exit $fuzz_status): see its output above" >&2
  exit 1
fi
