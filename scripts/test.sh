#!/usr/bin/env bash
# The full test run: installs every package the tests need, builds, runs every test (unit and
# integration; integration tests start their own PostgreSQL, Redis, nginx and supervisord on
# 127.0.0.1), after fuzzing every parser that faces the network or a file for a bounded time
# (scripts/fuzz.sh; VIGIL_FUZZ_SECONDS per harness, default 12: sixteen harnesses, two at a time,
# keep the run well under 30 minutes). Exit status: ctest's, or 1 when the fuzzing found anything.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's wall time, printed at the end: where the run's minutes go.
phase_start=$SECONDS
phases=()
phase_done() {
  phases+=("$1 $((SECONDS - phase_start))s")
  phase_start=$SECONDS
}
trap 'echo "test: phases: ${phases[*]:-none} (total ${SECONDS}s)"' EXIT
scripts/as-root.sh scripts/install-deps.sh
phase_done packages
# Line tables only (VIGIL_DEBUG_INFO=lines): backtraces keep files and lines; the build takes
# about 0.7 of the CPU time of full debug information. Sources four to a translation unit
# (VIGIL_UNITY_BUILD): a clean build in 0.6 of the time. No benchmarks (VIGIL_BENCH=OFF): they
# run no test; scripts/build.sh builds them.
scripts/build.sh -DVIGIL_DEBUG_INFO=lines -DVIGIL_UNITY_BUILD=ON -DVIGIL_BENCH=OFF "$@"
phase_done build
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
# Fuzzing first, so that ctest's summary closes the run.
fuzz_status=0
fuzz_log=$(mktemp "${TMPDIR:-/tmp}/vigil-fuzz-log.XXXXXX")
scripts/fuzz.sh "${VIGIL_FUZZ_SECONDS:-12}" 2>&1 | tee "$fuzz_log" || fuzz_status=$?
phase_done fuzz
# Two at a time: the machine has 2 cores, and integration tests time real processes.
# The fleet deployment test (label deploy: Ansible over SSH to three namespace hosts, about half
# an hour here) runs on its own: scripts/test-deploy.sh.
ctest_status=0
ctest_log=$(mktemp "${TMPDIR:-/tmp}/vigil-ctest-log.XXXXXX")
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout 300 -LE deploy 2>&1 |
  tee "$ctest_log" || ctest_status=$?
phase_done ctest
# ctest shows the output of failed tests only: a skipped one says here why it could not run on
# this machine (the test's own words and the last lines it printed), so a skip is never silent.
sed -n '/^The following tests did not run:/,/^$/p' "$ctest_log" |
  sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' | while read -r name; do
  echo "test: $name was skipped; the end of what it printed:"
  awk -v t="$name" '
    $0 ~ /^[0-9]+\/[0-9]+ Test: / { sub(/^[0-9]+\/[0-9]+ Test: /, ""); cur = $0; next }
    cur == t && /^Output:$/ { grab = 1; n = 0; getline; next }
    grab && /^<end of output>$/ { grab = 0; next }
    grab { lines[n++] = $0 }
    END { for (i = (n > 40 ? n - 40 : 0); i < n; i++) print "  " lines[i] }
  ' "$BUILD_DIR/Testing/Temporary/LastTest.log"
done
if [ "$ctest_status" != 0 ]; then
  exit "$ctest_status"
fi
if [ "$fuzz_status" != 0 ]; then
  # Again at the end, where a CI log's tail shows it: which harness, what, and the input itself.
  echo "test: scripts/fuzz.sh failed (exit $fuzz_status); its findings:" >&2
  sed -n '/FAILURE(S)/,$p;/^FAIL /,/^replay/p' "$fuzz_log" >&2
  exit 1
fi
