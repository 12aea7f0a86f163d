#!/usr/bin/env bash
# Fuzzing, as CI runs it: builds the libFuzzer harnesses of tests/fuzz (clang, ASan + UBSan) into
# build-fuzz/ (or $VIGIL_FUZZ_BUILD_DIR), replays every seed in tests/fuzz/corpus/NAME/ and every
# saved crash in tests/fuzz/regressions/NAME/ through its harness NAME_fuzz (each must pass), then
# fuzzes each harness for SECONDS_PER_HARNESS (default 20; one harness per core at once) on a
# scratch copy of its corpus (the repository's corpus is never written). Prints executions/s and
# coverage per harness.
# Exits non-zero on any crash, leak, timeout or OOM, printing where the failing input was saved.
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS]     # 0: build and replay only
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_HARNESS=${1:-20}
BUILD_DIR=${VIGIL_FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_DIR=tests/fuzz
# Limits of one run: memory per process, seconds per input. The slowest input of any harness
# takes well under a second on an idle core; 25 s leaves room for a loaded machine (two
# harnesses beside a build) and still catches a hang.
LIMITS=(-rss_limit_mb=2048 -timeout=25)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if ! [[ $SECONDS_PER_HARNESS =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_HARNESS]" >&2
  exit 2
fi
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found (scripts/install-deps.sh installs clang and libclang-rt-14-dev)" >&2
  exit 2
fi

start=$SECONDS
launcher=()
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DVIGIL_FUZZ=ON "${launcher[@]}" \
  >/dev/null || exit 1
ninja -C "$BUILD_DIR" -j"$(nproc)" || exit 1
build_seconds=$((SECONDS - start))

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-fuzz.XXXXXX")
keep_scratch=0
failures=()
summary=()

# Every harness built from tests/fuzz/NAME_fuzz.cc.
names=()
for src in "$FUZZ_DIR"/*_fuzz.cc; do
  n=$(basename "$src" _fuzz.cc)
  names+=("$n")
done

# replay NAME KIND FILE...: runs each file once through NAME_fuzz, all in one process; when that
# fails, one by one, so that every failing file is reported (its output kept in the scratch folder).
replay() {
  local n=$1 kind=$2
  shift 2
  local bin=$BUILD_DIR/$FUZZ_DIR/${n}_fuzz f log
  [ $# -eq 0 ] && return
  "$bin" "${LIMITS[@]}" "$@" >"$scratch/$n-$kind.log" 2>&1 && return
  for f in "$@"; do
    log=$scratch/$n-$kind-$(basename "$f").log
    if ! "$bin" "${LIMITS[@]}" "$f" >"$log" 2>&1; then
      keep_scratch=1
      failures+=("$n: $kind input $f fails (output: $log)")
      echo "FAIL   $n: $kind input $f"
      grep -m3 -E "ERROR: |runtime error:|FUZZ_CHECK|terminate called|what\(\):" "$log" | sed 's/^/         /'
    fi
  done
}

replay_start=$SECONDS
for n in "${names[@]}"; do
  corpus=()
  regressions=()
  [ -d "$FUZZ_DIR/corpus/$n" ] && mapfile -t corpus < <(find "$FUZZ_DIR/corpus/$n" -type f | sort)
  [ -d "$FUZZ_DIR/regressions/$n" ] &&
    mapfile -t regressions < <(find "$FUZZ_DIR/regressions/$n" -type f ! -name '*.md' | sort)
  if [ ${#corpus[@]} -eq 0 ]; then
    failures+=("$n: no seed corpus in $FUZZ_DIR/corpus/$n")
  fi
  replay "$n" corpus "${corpus[@]}"
  replay "$n" regression "${regressions[@]}"
  echo "replay $n: ${#corpus[@]} seeds, ${#regressions[@]} regression inputs"
done
replay_seconds=$((SECONDS - replay_start))

fuzz_start=$SECONDS
# fuzz_one NAME: one harness for SECONDS_PER_HARNESS on a scratch copy of its corpus; its exit
# status goes to $scratch/NAME/rc.
fuzz_one() {
  local n=$1 bin=$BUILD_DIR/$FUZZ_DIR/${1}_fuzz work=$scratch/$1 dict=()
  mkdir -p "$work/corpus" "$work/artifacts"
  [ -d "$FUZZ_DIR/corpus/$n" ] && cp "$FUZZ_DIR/corpus/$n"/* "$work/corpus/" 2>/dev/null
  [ -f "$FUZZ_DIR/dict/$n.dict" ] && dict=(-dict="$FUZZ_DIR/dict/$n.dict")
  "$bin" "$work/corpus" "${LIMITS[@]}" "${dict[@]}" -max_total_time="$SECONDS_PER_HARNESS" \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" >"$work/fuzz.log" 2>&1
  echo $? >"$work/rc"
}

if [ "$SECONDS_PER_HARNESS" -gt 0 ]; then
  # One harness per core at a time (each libFuzzer process is one thread): every harness still
  # gets its full time, and the whole takes half as long on 2 cores.
  parallel=$(nproc)
  for n in "${names[@]}"; do
    fuzz_one "$n" &
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do
      wait -n || true
    done
  done
  wait
  for n in "${names[@]}"; do
    work=$scratch/$n
    rc=$(cat "$work/rc" 2>/dev/null || echo 1)
    # The last status line: "#N  DONE  cov: C ft: F corp: ... exec/s: E rss: R".
    status=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
    execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$work/fuzz.log" | tail -1)
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$work/fuzz.log" | tail -1)
    line=$(printf '%-18s %8s exec/s %10s runs  cov %6s  ft %6s' "$n" "${execs:-?}" "${runs:-?}" \
      "${cov:-?}" "${ft:-?}")
    if [ $rc -ne 0 ]; then
      keep_scratch=1
      found=$(find "$work/artifacts" -type f | head -1)
      what=$(grep -m1 -oE "ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer): [a-zA-Z -]+|runtime error: .*|FUZZ_CHECK failed: .*" "$work/fuzz.log")
      failures+=("$n: fuzzing failed (${what:-exit $rc}); input: ${found:-none saved}; output: $work/fuzz.log")
      line+="  FAILED: ${what:-exit $rc}"
    fi
    summary+=("$line")
    echo "fuzz   $line"
  done
fi
fuzz_seconds=$((SECONDS - fuzz_start))

echo
echo "fuzz: build ${build_seconds}s, replay ${replay_seconds}s, fuzzing ${fuzz_seconds}s" \
  "(${SECONDS_PER_HARNESS}s per harness); total $((SECONDS - start))s"
for line in "${summary[@]}"; do
  echo "  $line"
done
if [ ${#failures[@]} -gt 0 ]; then
  echo
  echo "fuzz: ${#failures[@]} FAILURE(S); inputs and logs kept in $scratch" >&2
  for f in "${failures[@]}"; do
    echo "  - $f" >&2
  done
  # The inputs themselves, so a finding in a log whose machine is gone can still be replayed:
  # base64 -d > tests/fuzz/regressions/NAME/crash-... (inputs over 16 KiB are left out).
  for f in "$scratch"/*/artifacts/*; do
    [ -f "$f" ] || continue
    if [ "$(stat -c %s "$f")" -le 16384 ]; then
      echo "input $(basename "$(dirname "$(dirname "$f")")")/$(basename "$f") (base64):" >&2
      base64 -w 100 "$f" >&2
    fi
  done
  echo "Reproduce one: $BUILD_DIR/$FUZZ_DIR/NAME_fuzz INPUT" >&2
  exit 1
fi
[ $keep_scratch -eq 0 ] && rm -rf "$scratch"
echo "fuzz: all harnesses passed"
