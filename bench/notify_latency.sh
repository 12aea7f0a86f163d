#!/usr/bin/env bash
# Fault -> notification received, for Vigil and for Prometheus + Alertmanager side by side in the
# same run, both ending at the same local webhook receiver behind the same Alertmanager.
# Fault: a gauge `bench_fault{run="I"}` flipping from 0 to 1 on a small local HTTP endpoint
# (Prometheus text format) that both sides scrape; each fault has its own `run` label, so that on
# both sides it is a new alert, a new Alertmanager group, and group_wait 0s applies (a group that
# already exists would hold a new alert up to group_interval).
#   Vigil: agent with the prometheus collector scraping the endpoint every VIGIL_INTERVAL ->
#          controller rule `app_bench_fault > 0.5` (for: 0s; judged as the sample arrives) ->
#          incident opened, its notification written to the outbox in the same transaction ->
#          notifier -> Alertmanager API v2 -> webhook receiver.
#   Peer:  Prometheus scraping the endpoint every PROM_INTERVAL, rule `bench_fault > 0.5`
#          (for: 0s) evaluated every PROM_INTERVAL -> Alertmanager -> webhook receiver.
# Alertmanager, shared: group_by ['...'] (each alert its own group), group_wait 0s,
# group_interval 1s, no cluster: its fastest. The receiver stamps each firing alert on arrival.
# Where Vigil's time goes: the alert's startsAt is when the controller opened the incident (its
# clock, the same machine's), which splits the path into fault -> incident open (the wait for
# the agent's next collection, the stream, the rule) and incident open -> receiver (the commit
# with its outbox row, the notifier, Alertmanager, the webhook). `vigil watch -o json` tells each
# fault's incident id.
# Each fault opens a new Vigil incident: once both sides answered, the gauge goes back to 0 and
# the incident is resolved with `vigil incident resolve`, so the next fault is not joined to it.
#
# Usage (after scripts/install-bench-deps.sh and `ninja -C build vigil-controller vigil-agent vigil`):
#   bench/notify_latency.sh                      # N=20 faults, both sides scraping every 1 s
#   bench/notify_latency.sh 40                   # N=40 (or N=40 in the environment)
#   VIGIL_INTERVAL=100ms bench/notify_latency.sh # the agent at its shortest interval
#   PROM_INTERVAL=1s BUILD_DIR=build-release KEEP=1 bench/notify_latency.sh
# The temp dir is kept, and its path printed, when a notification failed to arrive, the script
# failed, or KEEP=1. Exit status 1 when any notification failed to arrive.
set -euo pipefail
export LC_ALL=C   # a dot in $EPOCHREALTIME
cd "$(dirname "$0")/.."
N=${1:-${N:-20}}
VIGIL_INTERVAL=${VIGIL_INTERVAL:-1s}
PROM_INTERVAL=${PROM_INTERVAL:-1s}
BUILD=${BUILD_DIR:-build}
KEEP=${KEEP:-0}
TIMEOUT_S=20   # per side and fault: nothing by then is a failed notification

for bin in controller/vigil-controller agent/vigil-agent cli/vigil; do
  [ -x "$BUILD/$bin" ] ||
    { echo "missing $BUILD/$bin: ninja -C $BUILD vigil-controller vigil-agent vigil" >&2; exit 2; }
done
for tool in prometheus prometheus-alertmanager python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: scripts/install-bench-deps.sh" >&2; exit 2; }
done
CONTROLLER_BIN=$(realpath "$BUILD/controller/vigil-controller")
AGENT_BIN=$(realpath "$BUILD/agent/vigil-agent")
VIGIL_BIN=$(realpath "$BUILD/cli/vigil")

W=$(mktemp -d /tmp/vigil-notify.XXXX); chmod 755 "$W"
PIDS=()
FAILED=0
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ] || [ "$FAILED" -gt 0 ] || [ "$KEEP" = 1 ]; then
    echo "logs kept in $W (controller.log, agent.log, watch.log, hook.log, fault.log, prom.log, am.log)" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
free_port() { "$PWD/scripts/free-port"; }

# ---- the fault: a gauge on a local endpoint; POST /set/V sets it and answers the time ----
FP=$(free_port)
cat >"$W/fault.py" <<'PY'
import http.server, sys, threading, time
value, run = 0, "0"
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        with lock:
            v, r = value, run
        self.reply(f"# HELP bench_fault 1 while the benchmark's fault lasts.\n"
                   f"# TYPE bench_fault gauge\nbench_fault{{run=\"{r}\"}} {v}\n")
    def do_POST(self):  # /set/VALUE/RUN
        global value, run
        _, _, v, r = self.path.split("/")
        with lock:
            value, run = int(v), r
            t = time.time()
        print(f"{t:.6f} set {value} run {run}", flush=True)
        self.reply(f"{t:.6f}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$W/fault.py" "$FP" >"$W/fault.log" 2>&1 & PIDS+=($!)

# ---- the receiver: stamps every firing alert on arrival ----
WH=$(free_port)
cat >"$W/hook.py" <<'PY'
import calendar, http.server, json, sys, time
def unix(rfc3339):  # "2026-12-01T06:07:00.123Z" -> seconds
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for a in body.get("alerts", []):
            if a.get("status") == "firing":
                labels = a["labels"]
                # Vigil's startsAt is when the controller opened the incident.
                print(f"{t:.6f} firing {labels.get('alertname')} {labels.get('incident_id', '-')}"
                      f" {labels.get('run', '-')} {unix(a['startsAt']):.3f}", flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$W/hook.py" "$WH" >"$W/hook.log" 2>&1 & PIDS+=($!)

# ---- Alertmanager (shared) and Prometheus, at their fastest settings ----
AM=$(free_port); PP=$(free_port)
cat >"$W/am.yml" <<Y
route: {receiver: hook, group_by: ['...'], group_wait: 0s, group_interval: 1s, repeat_interval: 24h}
receivers: [{name: hook, webhook_configs: [{url: 'http://127.0.0.1:$WH/', send_resolved: false}]}]
Y
prometheus-alertmanager --config.file="$W/am.yml" --storage.path="$W/am" \
  --web.listen-address="127.0.0.1:$AM" --cluster.listen-address= >"$W/am.log" 2>&1 & PIDS+=($!)
cat >"$W/rules.yml" <<Y
groups:
  - name: bench
    interval: $PROM_INTERVAL
    rules:
      - alert: BenchFault
        expr: bench_fault > 0.5
        for: 0s
Y
cat >"$W/prom.yml" <<Y
global: {scrape_interval: $PROM_INTERVAL, scrape_timeout: $PROM_INTERVAL, evaluation_interval: $PROM_INTERVAL}
rule_files: ['$W/rules.yml']
alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:$AM']}]}]}
scrape_configs: [{job_name: fault, static_configs: [{targets: ['127.0.0.1:$FP']}]}]
Y
prometheus --config.file="$W/prom.yml" --storage.tsdb.path="$W/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$W/prom.log" 2>&1 & PIDS+=($!)

# ---- Vigil: controller with Alertmanager as receiver, one agent, a timestamped watch ----
CT=$(free_port)
cat >"$W/vigil-rules.yaml" <<'Y'
rules:
  - alert: BenchFault
    expr: app_bench_fault > 0.5
    for: 0s
    severity: SEV2
Y
cat >"$W/controller.yaml" <<Y
notifications:
  receivers:
    - {name: am, type: alertmanager, url: 'http://127.0.0.1:$AM'}
Y
VIGIL_TOKEN=$("$CONTROLLER_BIN" users add bench --role commander --db="$W/vigil.db" 2>"$W/users.log")
export VIGIL_TOKEN
"$CONTROLLER_BIN" --listen="127.0.0.1:$CT" --db="$W/vigil.db" --insecure --http-listen=off \
  --rules="$W/vigil-rules.yaml" --config="$W/controller.yaml" >"$W/controller.log" 2>&1 & PIDS+=($!)
cat >"$W/agent.yaml" <<Y
id: app-1
labels: {role: app, service: bench-app}
journal: $W/agent.journal      # state (spool beside it) in the temp dir, not /var/lib/vigil
collectors:
  prometheus:
    targets:
      - {name: fault, url: 'http://127.0.0.1:$FP/metrics', prefix: app_, series: {bench_fault: gauge}}
Y
CLI_FLAGS=(--controller="127.0.0.1:$CT" --insecure)
vigil() { "$VIGIL_BIN" "${CLI_FLAGS[@]}" "$@"; }
for _ in $(seq 1 80); do vigil --timeout=1s agents >/dev/null 2>&1 && break; sleep 0.25; done
if ! err=$(vigil --timeout=1s agents 2>&1 >/dev/null); then
  echo "vigil cannot talk to the controller: $err (see $W/controller.log)" >&2
  exit 1
fi
"$AGENT_BIN" --controller="127.0.0.1:$CT" --config="$W/agent.yaml" --insecure \
  --interval="$VIGIL_INTERVAL" >"$W/agent.log" 2>&1 & AGENT_PID=$!; PIDS+=($AGENT_PID)
# Runs a command and prefixes each line of its stdout with the time it was received.
cat >"$W/stamp.py" <<'PY'
import signal, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
def stop(*_):
    child.terminate()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
for line in iter(child.stdout.readline, b""):
    sys.stdout.write(f"{time.time():.6f} {line.decode(errors='replace')}")
    sys.stdout.flush()
sys.exit(child.wait())
PY
python3 "$W/stamp.py" "$VIGIL_BIN" "${CLI_FLAGS[@]}" watch -o json \
  >"$W/watch.log" 2>"$W/watch.err" & PIDS+=($!)

for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$AM/-/ready" >/dev/null 2>&1 &&
    curl -sf "http://127.0.0.1:$PP/-/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep 5   # first scrapes on both sides, the agent connected and streaming
if ! grep -q app_bench_fault <(vigil metrics app-1 2>&1); then
  echo "warning: the agent reports no app_bench_fault yet:" >&2
  vigil metrics app-1 >&2 || true
fi

# ---- helpers over the logs ----
count() { grep -c -- "$2" "$1" || true; }                          # lines of $1 containing $2
nth_time() { grep -- "$2" "$1" | sed -n "$3p" | cut -d' ' -f1 || true; }  # time of the $3-th such line
OPENED='"kind":"incident_opened"'
ALERT_RESOLVED='"kind":"alert_resolved"'
incident_of() {  # the incident_id of the $1-th incident_opened line of the watch log
  grep -- "$OPENED" "$W/watch.log" | sed -n "$1p" | cut -d' ' -f2- |
    python3 -c 'import json,sys;print(json.loads(sys.stdin.read())["incident_id"])'
}
set_fault() { curl -sf -X POST "http://127.0.0.1:$FP/set/$1/$2"; }

# ---- the faults ----
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
AGENT_TICKS0=$(ticks "$AGENT_PID"); FAULTS_T0=$EPOCHREALTIME
: >"$W/runs.txt"
for i in $(seq 1 "$N"); do
  open0=$(count "$W/watch.log" "$OPENED")
  res0=$(count "$W/watch.log" "$ALERT_RESOLVED")
  # A random phase, so faults land anywhere in both sides' scrape cycles.
  sleep "$(python3 -c 'import random;print(f"{random.random():.3f}")')"
  t0=$(set_fault 1 "$i")
  deadline_us=$(( ${EPOCHREALTIME/./} + TIMEOUT_S * 1000000 ))
  vt=""; pt=""; ot=""; id=""
  while :; do
    if [ -z "$ot" ] && [ "$(count "$W/watch.log" "$OPENED")" -gt "$open0" ]; then
      ot=$(nth_time "$W/watch.log" "$OPENED" $((open0 + 1)))
      id=$(incident_of $((open0 + 1)))
    fi
    # This fault's alerts only: Vigil's by the new incident's id, Prometheus's by its run label.
    [ -z "$vt" ] && [ -n "$id" ] && vt=$(nth_time "$W/hook.log" " firing VigilIncident $id " 1)
    [ -z "$pt" ] && pt=$(nth_time "$W/hook.log" " firing BenchFault - $i " 1)
    { [ -n "$vt" ] && [ -n "$pt" ]; } && break
    [ "${EPOCHREALTIME/./}" -lt "$deadline_us" ] || break
    sleep 0.02
  done
  set_fault 0 "$i" >/dev/null
  lat() { if [ -n "$1" ]; then python3 -c "print(f'{$1 - $2:.3f}')"; else echo FAIL; fi; }
  vlat=$(lat "$vt" "$t0"); plat=$(lat "$pt" "$t0")
  # The split of Vigil's path at the incident's opening, by the controller's clock (startsAt).
  opened=""
  [ -n "$vt" ] && opened=$(grep -- " firing VigilIncident $id " "$W/hook.log" | head -1 | cut -d' ' -f6)
  olat=$(lat "$opened" "$t0"); nlat=FAIL
  [ -n "$opened" ] && nlat=$(lat "$vt" "$opened")
  [ "$vlat" = FAIL ] && FAILED=$((FAILED + 1))
  [ "$plat" = FAIL ] && FAILED=$((FAILED + 1))
  echo "run $i: vigil $vlat s (open $olat s + notify $nlat s), prometheus+alertmanager $plat s"
  echo "$i $vlat $plat $olat $nlat" >>"$W/runs.txt"
  # Vigil: the alert resolved on the incident's timeline, then the incident itself, so the next
  # fault opens a new one. Prometheus: its alert resolved and flushed from Alertmanager's group.
  if [ -n "$ot" ]; then
    for _ in $(seq 1 $((TIMEOUT_S * 20))); do
      [ "$(count "$W/watch.log" "$ALERT_RESOLVED")" -gt "$res0" ] && break
      sleep 0.05
    done
    vigil incident resolve "$id" "bench fault $i over" \
      >>"$W/resolve.log" 2>&1 || echo "warning: could not resolve the incident of run $i" >&2
  fi
  sleep 4
done

# ---- summary ----
AGENT_TICKS1=$(ticks "$AGENT_PID"); FAULTS_T1=$EPOCHREALTIME
python3 - "$W/runs.txt" "$VIGIL_INTERVAL" "$PROM_INTERVAL" <<'PY'
import math, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def summary(name, column):
    ok = sorted(float(r[column]) for r in rows if r[column] != "FAIL")
    failed = [r[0] for r in rows if r[column] == "FAIL"]
    if not ok:
        print(f"{name}: nothing in {len(rows)} faults")
        return None
    p99 = ok[max(0, math.ceil(0.99 * len(ok)) - 1)]  # nearest rank: the max for 20 faults
    med = statistics.median(ok)
    failures = f"; FAILED runs: {' '.join(failed)}" if failed else ""
    print(f"{name}: median {med:.3f} s, p99 {p99:.3f} s, min {ok[0]:.3f} s, max {ok[-1]:.3f} s"
          f" ({len(ok)}/{len(rows)}{failures})")
    return med, p99
print(f"fault -> notification received over {len(rows)} faults (vigil agent every {sys.argv[2]};"
      f" prometheus scrape and evaluation every {sys.argv[3]}; alertmanager group_wait 0s):")
v = summary("vigil (agent -> rule -> outbox -> alertmanager -> receiver)", 1)
p = summary("prometheus (scrape -> rule -> alertmanager -> receiver)", 2)
summary("  vigil hop 1: fault -> incident open (collection, rule)", 3)
summary("  vigil hop 2: incident open -> receiver (outbox, notifier, alertmanager)", 4)
if v and p:
    print(f"ratio of medians prometheus/vigil: {p[0] / v[0]:.2f}x")
    print(f"aims: vigil median <= 0.5 s: {'met' if v[0] <= 0.5 else 'NOT met'} ({v[0]:.3f} s);"
          f" >= 3x faster: {'met' if p[0] / v[0] >= 3 else 'NOT met'} ({p[0] / v[0]:.2f}x)")
PY
python3 -c "
hz = $(getconf CLK_TCK); secs = $FAULTS_T1 - $FAULTS_T0
cpu = ($AGENT_TICKS1 - $AGENT_TICKS0) / hz
print(f'vigil-agent CPU over the faults: {cpu:.2f} s in {secs:.0f} s ({100 * cpu / secs:.2f} % of one core,'
      f' scraping every $VIGIL_INTERVAL)')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FAILED" -gt 0 ]; then
  echo "$FAILED notification(s) did not arrive within $TIMEOUT_S s; logs: $W" >&2
  exit 1
fi
