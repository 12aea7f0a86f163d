#!/usr/bin/env bash
# Chaos soak: the chaos suite's scenarios (tests/chaos) run round after round, each round with
# the next seed, until the controller and agents have been SIGKILLed KILLS times (default 100).
# Prints the seed, then batches sent/stored/lost, events acknowledged/lost, commands
# approved/run/run-twice and the time for the fleet to stream again after a restart (median,
# p99). Exit status: 0 when every invariant held (0 lost, 0 run twice, fleet back within 2 s at
# p99), 1 when one was violated (the failing round's seed is printed to replay it), 2 bad usage.
#
#   bench/chaos.sh [--kills N] [--seed S] [--build-dir DIR]
# Env: VIGIL_CHAOS_SEED (the first round's seed), VIGIL_BUILD_DIR. The disk-full and partition
# scenarios need root; they are skipped (and said so) otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
KILLS=100
SEED=${VIGIL_CHAOS_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000000))}
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS=${2:?--kills wants a number}; shift 2 ;;
    --kills=*) KILLS=${1#--kills=}; shift ;;
    --seed) SEED=${2:?--seed wants a number}; shift 2 ;;
    --seed=*) SEED=${1#--seed=}; shift ;;
    --build-dir) BUILD_DIR=${2:?--build-dir wants a folder}; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$KILLS$SEED" in *[!0-9]*) echo "chaos.sh: --kills and --seed want whole numbers" >&2; exit 2 ;; esac
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "chaos.sh: no build folder (scripts/build.sh)" >&2; exit 2; }
BIN=$BUILD_DIR/tests/chaos/chaos_test
[ -x "$BIN" ] || { echo "chaos.sh: $BIN is missing: build first (scripts/build.sh)" >&2; exit 2; }

REPORT=$(mktemp /tmp/vigil-chaos-report-XXXXXX)
LOG=$(mktemp /tmp/vigil-chaos-log-XXXXXX)
trap 'rm -f "$REPORT" "$LOG"' EXIT
echo "chaos soak: seed $SEED, until $KILLS kills (replay: bench/chaos.sh --seed $SEED --kills $KILLS)"

kills() { awk '$1 == "kills" { s += $2 } END { print s + 0 }' "$REPORT"; }
failed_rounds=()
round=0
start=$(date +%s)
while [ "$(kills)" -lt "$KILLS" ]; do
  seed=$((SEED + round))
  # The scenarios that kill; the disk-full one (no kills) in the first round only.
  filter='ChaosTest.TelemetryUnder*:ChaosTest.IncidentsUnder*:ChaosTest.RemediationUnder*:ChaosTest.AgentsStreamAgain*:ChaosTest.Partition*'
  [ "$round" = 0 ] && filter="$filter:ChaosTest.DiskFull*"
  if VIGIL_CHAOS_SEED=$seed VIGIL_CHAOS_REPORT=$REPORT VIGIL_BUILD_DIR=$BUILD_DIR \
    VIGIL_SOURCE_DIR=$PWD "$BIN" --gtest_filter="$filter" >"$LOG" 2>&1; then
    echo "round $((round + 1)) (seed $seed): passed; $(kills) kills so far"
  else
    failed_rounds+=("$seed")
    echo "round $((round + 1)) (seed $seed): FAILED; $(kills) kills so far; replay with" \
      "VIGIL_CHAOS_SEED=$seed $BIN --gtest_filter='$filter'"
    grep -E '^\[  FAILED  \]|Failure$' -A3 "$LOG" | grep -v '^--$' | head -40 | sed 's/^/    /'
  fi
  # A round that kills nothing would loop for ever.
  if [ "$(kills)" = 0 ]; then
    echo "chaos.sh: the first round killed nothing; see its log:" >&2
    tail -40 "$LOG" >&2
    exit 1
  fi
  round=$((round + 1))
done

sum() { awk -v k="$1" '$1 == k { s += $2 } END { print s + 0 }' "$REPORT"; }
sent=$(($(sum telemetry.batches_sent) + $(sum partition.batches_sent)))
stored=$(($(sum telemetry.batches_stored) + $(sum partition.batches_stored)))
lost_recorded=$(($(sum telemetry.batches_lost_recorded) + $(sum partition.batches_lost_recorded)))
lost_unrecorded=$(($(sum telemetry.batches_lost_unrecorded) + $(sum partition.batches_lost_unrecorded)))
events=$(sum events_acknowledged)
events_lost=$(sum events_lost)
approved=$(sum commands_approved)
ran=$(sum commands_run)
twice=$(sum commands_run_twice)
read -r median p99 returns < <(awk '$1 == "fleet_return_ms" { print $2 }' "$REPORT" | sort -n |
  awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - 0"; exit }
    m = int((NR + 1) / 2); p = int(NR * 0.99 + 0.999); if (p < 1) p = 1; if (p > NR) p = NR
    printf "%d %d %d\n", v[m], v[p], NR }')
echo
echo "chaos soak: seed $SEED, $round rounds, $(kills) kills, $(($(date +%s) - start)) s"
echo "  batches:  sent $sent, stored (highest sequence) $stored, lost $((lost_recorded + lost_unrecorded))" \
  "($lost_recorded recorded as gaps, $lost_unrecorded unrecorded)"
echo "  events:   acknowledged $events, lost $events_lost"
echo "  commands: approved $approved, run $ran, run twice $twice"
echo "  fleet return after a restart: median ${median} ms, p99 ${p99} ms ($returns restarts of 20 agents)"
status=0
if [ "$lost_unrecorded" -gt 0 ] || [ "$events_lost" -gt 0 ] || [ "$twice" -gt 0 ]; then status=1; fi
if [ "$p99" != "-" ] && [ "$p99" -gt 2000 ]; then status=1; fi
if [ ${#failed_rounds[@]} -gt 0 ]; then
  echo "  violated invariants in the rounds with seeds: ${failed_rounds[*]}"
  status=1
fi
[ "$status" = 0 ] && echo "  every invariant held" || echo "  INVARIANTS VIOLATED"
exit "$status"
