#!/usr/bin/env bash
# Issue 12's benchmark in one run, as one table with its aims: (1) reconnect storms of 1,000, 3,000
# and 10,000 agents and (2) the steady state after the largest (bench/scale.sh), (3) fault ->
# incident against Prometheus + Alertmanager at their fastest (bench/detection_latency.sh),
# (4) an alert storm of 50,000 series (alert_storm_bench) and the store's append rate beside
# SQLite's batched ceiling (store_append_bench). The parts run one after the other, never side by
# side, so none measures another's load. About 20 minutes on 2 cores.
#
#   bench/scale_report.sh                        # as root (detection starts Redis, Prometheus, ...)
#   DETECT_N=20 SCALE_SIZES="1000 3000" bench/scale_report.sh
#   bench/scale_report.sh --from /tmp/vigil-scale-report.XXXX   # the table again, from its folder
# Environment: DETECT_N (40), STORE_ROUNDS (5: rounds of the store and SQLite's ceiling, taken in
# turn), and scale.sh's own (SCALE_SIZES, SCALE_HOLD, SCALE_STEADY, ...).
# Every part's full output is kept in the folder printed at the end. Needs a build
# (scripts/build.sh) and scripts/install-bench-deps.sh. Exit status 1 when a part failed to run;
# aims not met are reported in the table, not by the exit status.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
BUILD=${VIGIL_BUILD_DIR:-build}
DETECT_N=${DETECT_N:-40}
STORE_ROUNDS=${STORE_ROUNDS:-5}
for f in "$BUILD/bench/alert_storm_bench" "$BUILD/bench/store_append_bench"; do
  [ -x "$f" ] || { echo "scale_report.sh: $f is missing: build first (scripts/build.sh)" >&2; exit 2; }
done
failed=0
if [ "${1:-}" = --from ]; then
  # The table again from an earlier run's folder (the path it printed).
  OUT=${2:?usage: bench/scale_report.sh [--from FOLDER]}
  [ -f "$OUT/scale.txt" ] || { echo "scale_report.sh: $OUT holds no earlier run" >&2; exit 2; }
else
  OUT=$(mktemp -d /tmp/vigil-scale-report.XXXX)
  git rev-parse --short HEAD >"$OUT/commit.txt" 2>/dev/null || echo "?" >"$OUT/commit.txt"
  part() {  # part NAME COMMAND...: runs one part, its output to $OUT/NAME.txt
    local name=$1; shift
    echo "scale_report.sh: $name ($(date -u +%H:%M:%S))" >&2
    if ! "$@" >"$OUT/$name.txt" 2>&1; then
      echo "scale_report.sh: $name failed (see $OUT/$name.txt)" >&2
      failed=1
    fi
  }
  part scale env SCALE_KEEP=1 VIGIL_BUILD_DIR="$BUILD" bench/scale.sh
  part detection env BUILD_DIR="$BUILD" bench/detection_latency.sh "$DETECT_N"
  part alert_storm "$BUILD/bench/alert_storm_bench"
  # Rounds of (ceiling, store) in turn: the table gives their medians.
  part store "$BUILD/bench/store_append_bench" --rounds="$STORE_ROUNDS"
fi

# The scale runs' own reports (scale.sh keeps its folder with SCALE_KEEP=1 and says where).
SCALE_DIR=$(sed -n 's/^scale.sh: logs kept in //p' "$OUT/scale.txt" | tail -1)

python3 - "$OUT" "$SCALE_DIR" "$(nproc)" "$(cat "$OUT/commit.txt" 2>/dev/null || echo ?)" <<'PY'
import os, re, sys

out, scale_dir, cores, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def read(name):
    try:
        with open(os.path.join(out, name + ".txt")) as f:
            return f.read()
    except OSError:
        return ""

def fields(path, kind):
    """key=value pairs of the report line starting with `kind` ({} when absent)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(kind + " "):
                    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    except OSError:
        pass
    return {}

def met(ok):
    return "met" if ok else "NOT met"

rows = []  # (part, figure, aim, verdict)

# (1) and (2): storms and the steady state, plain text.
runs = []
if scale_dir and os.path.isdir(scale_dir):
    for name in os.listdir(scale_dir):
        if re.fullmatch(r"plain-\d+", name):
            report = os.path.join(scale_dir, name, "report.txt")
            storm, steady = fields(report, "storm"), fields(report, "steady")
            if storm:
                runs.append((int(name.split("-")[1]), storm, steady))
runs.sort(key=lambda run: run[0])
if not runs:
    rows.append(("(1) storms, (2) steady", "no result (see scale.txt)", "", met(False)))
for n, storm, steady in runs:
    converged = storm.get("converged") == "yes"
    figure = (f"converged in {storm.get('converge_s')} s" if converged
              else f"not converged: {storm.get('streaming_end')}/{n} streaming after {storm.get('timeout_s')} s")
    figure += (f"; {storm.get('drops')} dropped ({storm.get('drops_cancelled_own_gap', '?')} the simulator's own);"
               f" CLI p99 {storm.get('cli_p99_ms')} ms; controller peak {storm.get('ctl_peak_cpu_pct')} % CPU,"
               f" {storm.get('ctl_peak_rss_mb')} MB")
    aim = "all streaming <= 30 s, 0 dropped, CLI p99 < 200 ms"
    ok = (converged and float(storm.get("converge_s", "inf")) <= 30 and storm.get("drops") == "0"
          and float(storm.get("cli_p99_ms", "inf")) < 200)
    rows.append((f"(1) storm, {n:,} agents", figure, aim, met(ok)))
if len(runs) >= 2 and runs[-1][2] and runs[0][2]:
    (n0, _, s0), (n1, _, s1) = runs[0], runs[-1]
    a0, a1 = float(s0.get("streaming_end", 0)), float(s1.get("streaming_end", 0))
    figure = (f"{float(s1.get('samples_acked_per_s', 0)):,.0f} samples/s, controller"
              f" {100 * float(s1.get('ctl_cpu_share_of_machine', 0)):.0f} % of the machine")
    if a0 >= 0.9 * n0 and a1 >= 0.9 * n1 and a1 > a0:
        slope = (float(s1["ctl_rss_mb"]) - float(s0["ctl_rss_mb"])) * 1024 / (a1 - a0)
        rows.append((f"(2) steady, {n1:,} agents x 50 series", figure + f", {slope:.1f} KiB RSS per agent (slope from {n0:,})",
                     "<= 50 KiB per agent", met(slope <= 50)))
    else:
        rows.append((f"(2) steady, {n1:,} agents x 50 series", figure + f"; RSS slope n/a ({a0:.0f}/{n0} and {a1:.0f}/{n1} streaming)",
                     "<= 50 KiB per agent", met(False)))

# (3) detection.
det = read("detection")
v = re.search(r"^vigil .*?median ([\d.]+) s, p99 ([\d.]+) s.*?\((\d+)/(\d+) detected\)", det, re.M)
p = re.search(r"^prometheus\+alertmanager .*?median ([\d.]+) s, p99 ([\d.]+) s", det, re.M)
if v and p:
    vm, vp, pm = float(v.group(1)), float(v.group(2)), float(p.group(1))
    rows.append(("(3) fault -> incident", f"Vigil median {vm:.2f} s, p99 {vp:.2f} s ({v.group(3)}/{v.group(4)});"
                 f" Prometheus + Alertmanager median {pm:.2f} s, p99 {float(p.group(2)):.2f} s ({pm / vm:.1f}x)",
                 "median <= 0.43 s, p99 <= 1.0 s, >= 3x the peer's median",
                 met(vm <= 0.43 and vp <= 1.0 and pm >= 3 * vm)))
else:
    rows.append(("(3) fault -> incident", "no result (see detection.txt)", "", met(False)))

# (4) alert storm and the store.
storm = re.search(r"on the timeline, correlated: ([\d.]+) s", read("alert_storm"))
checked = re.search(r"check: (\d+) of (\d+) alerts stored on an incident.*chain verifies", read("alert_storm"))
if storm:
    seconds = float(storm.group(1))
    rows.append(("(4) 50,000 series firing at once", f"all on the timeline, correlated, in {seconds:.2f} s"
                 + ("" if checked else " (its own check did not pass: see alert_storm.txt)"),
                 "<= 10 s", met(seconds <= 10 and checked is not None)))
else:
    rows.append(("(4) 50,000 series firing at once", "no result (see alert_storm.txt)", "", met(False)))
store = read("store")
rate = re.search(r"store append rate: (\d+) events/s", store)
rounds = re.search(r"the median of (\d+) rounds \((\d+)-(\d+)\); .* ceiling's median, (\d+) rows/s", store)
ceiling = (re.search(r"1,000-row ceiling, (\d+) rows/s", store)
           or re.search(r"SQLite ceiling: bare INSERTs of 200-byte rows\s+batch\s+1000\s+(\d+) /s", store))
if rate and rounds:
    r = int(rate.group(1))
    rows.append(("(4) the store's append rate",
                 f"{r:,} events/s, median of {rounds.group(1)} rounds ({int(rounds.group(2)):,}-{int(rounds.group(3)):,}); "
                 f"SQLite's ceiling {int(rounds.group(4)):,} rows/s, median of the rounds in turn with them",
                 ">= 250,000 events/s", met(r >= 250_000)))
elif rate:
    r = int(rate.group(1))
    rows.append(("(4) the store's append rate", f"{r:,} events/s" + (f" (SQLite's ceiling {int(ceiling.group(1)):,} rows/s in the same run)" if ceiling else ""),
                 ">= 250,000 events/s", met(r >= 250_000)))
else:
    rows.append(("(4) the store's append rate", "no result (see store.txt)", "", met(False)))

print(f"Vigil at fleet scale (issue 12), one run: {cores} cores, commit {commit}, plain text; parts run one after another")
print()
print("| part | figure | aim | |")
print("|---|---|---|---|")
for part, figure, aim, verdict in rows:
    print(f"| {part} | {figure} | {aim} | {verdict} |")
print()
print(f"Each part's full output: {out} (scale: {scale_dir or 'no folder'})")
PY
exit "$failed"
