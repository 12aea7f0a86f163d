#!/usr/bin/env bash
# Approval -> command started with Vigil, against Ansible's ad-hoc `command` module on the same
# number of hosts, in one run on one machine.
#
# Vigil: bench/dispatch_bench (a real controller, simulated agents; see its header) for 1 agent
# and for 1,000 agents in waves of 100: median, p99 and last of approval -> command received.
# Ansible: `ansible all -i INV -m command -a true` on an inventory of 1 and of 1,000 hosts, every
# one `ansible_connection=local` (no SSH at all: the most favourable case for Ansible), with the
# default forks (5) and with -f 50; wall time from start to exit. The ratio is Ansible's wall
# time over the time the last Vigil agent had its command.
#
#   cmake -S . -B build -G Ninja && ninja -C build dispatch_bench
#   bench/dispatch_vs_ansible.sh            # BUILD=build ANSIBLE_RUNS=2 ANSIBLE_RUNS_SLOW=1
#
# ANSIBLE_RUNS: runs of each Ansible case (default 2); ANSIBLE_RUNS_SLOW: runs of 1,000 hosts at
# the default forks, which takes minutes (default 1). WAVE (100), REPS_1 (5), REPS_1000 (3) go
# to dispatch_bench.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
WAVE=${WAVE:-100}
REPS_1=${REPS_1:-5}
REPS_1000=${REPS_1000:-3}
ANSIBLE_RUNS=${ANSIBLE_RUNS:-2}
ANSIBLE_RUNS_SLOW=${ANSIBLE_RUNS_SLOW:-1}
BENCH=$BUILD/bench/dispatch_bench
CONTROLLER=$BUILD/controller/vigil-controller
W=$(mktemp -d /tmp/dispatch-vs-ansible.XXXXXX)
trap 'rm -rf "$W"' EXIT

if [ ! -x "$BENCH" ] || [ ! -x "$CONTROLLER" ]; then
  echo "missing $BENCH or $CONTROLLER: ninja -C $BUILD dispatch_bench" >&2
  exit 1
fi

echo "== machine: $(nproc) core(s), load average $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(date -u +%FT%TZ)"

# --- Vigil -----------------------------------------------------------------------------------
# Prints "MEDIAN P99 LAST" (ms) from dispatch_bench's summary line, or "- - -".
vigil_summary() {
  local n='\([0-9.]*\)'
  sed -n "s/.*approval->started median $n ms, p99 $n ms, last $n ms (median of.*/\1 \2 \3/p" "$1" |
    tail -1 | grep . || echo "- - -"
}
echo "== vigil: 1 agent, $REPS_1 rep(s)"
"$BENCH" --controller-bin "$CONTROLLER" --agents 1 --wave-size "$WAVE" --reps "$REPS_1" \
  2>&1 | tee "$W/vigil-1.txt"
echo "== vigil: 1000 agents, waves of $WAVE, $REPS_1000 rep(s)"
"$BENCH" --controller-bin "$CONTROLLER" --agents 1000 --wave-size "$WAVE" --reps "$REPS_1000" \
  2>&1 | tee "$W/vigil-1000.txt"
echo "== load average after vigil: $(cut -d' ' -f1-3 /proc/loadavg)"
read -r V1_MED V1_P99 V1_LAST <<<"$(vigil_summary "$W/vigil-1.txt")"
read -r VK_MED VK_P99 VK_LAST <<<"$(vigil_summary "$W/vigil-1000.txt")"

# --- Ansible ---------------------------------------------------------------------------------
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_STDOUT_CALLBACK=minimal
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_GATHERING=explicit ANSIBLE_RETRY_FILES_ENABLED=False
declare -A ANS  # "HOSTS:FORKS" -> median wall seconds, or "-"
if ! command -v ansible >/dev/null; then
  echo "== ansible: not installed (the ansible package); no baseline"
else
  echo "== ansible: $(ansible --version 2>/dev/null | sed -n 1p), $(python3 --version)"
  for n in 1 1000; do
    inv=$W/inv-$n
    {
      echo "[fleet]"
      for i in $(seq 1 "$n"); do
        printf 'host%04d ansible_connection=local ' "$i"
        echo "ansible_python_interpreter=/usr/bin/python3"
      done
    } >"$inv"
    for forks in 5 50; do
      runs=$ANSIBLE_RUNS
      [ "$n" = 1000 ] && [ "$forks" = 5 ] && runs=$ANSIBLE_RUNS_SLOW
      flag=()
      [ "$forks" != 5 ] && flag=(-f "$forks")  # 5 is Ansible's default: no flag at all
      times=()
      for r in $(seq 1 "$runs"); do
        out=$W/ansible-$n-$forks-$r.txt
        s=$(date +%s.%N)
        ansible all -i "$inv" "${flag[@]}" -m command -a true >"$out" 2>&1
        rc=$?
        e=$(date +%s.%N)
        t=$(python3 -c "print(f'{$e - $s:.2f}')")
        ok=$(grep -cE '\| (CHANGED|SUCCESS)' "$out")
        echo "ansible hosts=$n forks=$forks: wall ${t} s, $ok/$n hosts ok, exit $rc (run $r)"
        if [ "$ok" != "$n" ]; then
          grep -vE '\| (CHANGED|SUCCESS)|^$' "$out" | head -5 | sed 's/^/  | /'
        fi
        times+=("$t")
      done
      ANS[$n:$forks]=$(python3 -c "import statistics, sys
print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "${times[@]}")
      echo "ansible hosts=$n forks=$forks: median wall ${ANS[$n:$forks]} s over $runs run(s)"
    done
  done
fi
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- Table -----------------------------------------------------------------------------------
ratio() {  # ansible seconds, vigil ms
  python3 -c "import sys
try:
    print(f'{float(sys.argv[1]) * 1000 / float(sys.argv[2]):.0f}x')
except ValueError:
    print('-')" "$1" "$2"
}
a() { echo "${ANS[$1]:--}"; }
echo
echo "== approval -> command started (Vigil: median over reps) vs Ansible ad-hoc wall time"
printf '%-6s | %-34s | %-22s | %-22s\n' hosts "vigil median / p99 / last (ms)" \
  "ansible forks=5 (s)" "ansible forks=50 (s)"
printf '%-6s | %-34s | %-22s | %-22s\n' 1 "$V1_MED / $V1_P99 / $V1_LAST" \
  "$(a 1:5) ($(ratio "$(a 1:5)" "$V1_LAST"))" "$(a 1:50) ($(ratio "$(a 1:50)" "$V1_LAST"))"
printf '%-6s | %-34s | %-22s | %-22s\n' 1000 "$VK_MED / $VK_P99 / $VK_LAST" \
  "$(a 1000:5) ($(ratio "$(a 1000:5)" "$VK_LAST"))" \
  "$(a 1000:50) ($(ratio "$(a 1000:50)" "$VK_LAST"))"
echo "(ratio = Ansible wall time / Vigil last agent started; waves of $WAVE for Vigil)"
python3 - "$VK_LAST" "$(a 1000:5)" "$(a 1000:50)" <<'EOF'
import sys
try:
    last = float(sys.argv[1])
except ValueError:
    sys.exit(0)
print(f"aim 1: 1,000 agents started in under 1 s: {'met' if last < 1000 else 'NOT met'} "
      f"(last started after {last:.0f} ms)")
walls = [float(x) for x in sys.argv[2:] if x != "-"]
if walls:
    best = min(walls) * 1000 / last
    print(f"aim 2: >= 50x faster than Ansible: {'met' if best >= 50 else 'NOT met'} "
          f"(against Ansible's faster setting: {best:.0f}x)")
EOF
