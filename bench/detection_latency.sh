#!/usr/bin/env bash
# Fault -> incident open for Vigil, side by side in the same run with Prometheus + Alertmanager
# detecting the same fault on the same Redis. Fault: 30 extra TCP clients on Redis, against the
# rule `redis_connected_clients > 20` (for: 0s) on both sides.
#   Vigil: agent with the redis collector every 1 s, which also checks the rule's threshold
#          between rounds (the controller sends it; every 100 ms by default) and sends a snapshot
#          at once when it is crossed -> controller rule -> "incident_opened" event, seen by
#          `vigil watch -o json` (receive time stamped per line).
#   Peer:  redis exporter scraped every 1 s, evaluation every 1 s, Alertmanager with group_wait 0s
#          and group_interval 1s -> webhook receiver (receive time stamped per alert).
# Each fault opens a new Vigil incident: after the alert resolves, the incident is resolved with
# `vigil incident resolve` so the next fault is not correlated into it.
#
# Usage (as root, after scripts/install-bench-deps.sh and
#        `ninja -C build vigil-controller vigil-agent vigil`):
#   bench/detection_latency.sh               # N=20 faults
#   bench/detection_latency.sh 40            # N=40 faults (or N=40 in the environment)
#   SENSE_EVERY=0 bench/detection_latency.sh # the agent without sensing between rounds
#   SENSE_EVERY=50ms bench/detection_latency.sh
#   BUILD_DIR=build-release bench/detection_latency.sh
#   KEEP=1 bench/detection_latency.sh        # keep the temp dir (logs) even when all went well
# The temp dir is kept, and its path printed, whenever a detection failed or the script failed.
# Exit status 1 when any detection failed (each is reported as FAILED on its run's line).
set -euo pipefail
export LC_ALL=C   # a dot in $EPOCHREALTIME
cd "$(dirname "$0")/.."
N=${1:-${N:-20}}
SENSE_EVERY=${SENSE_EVERY:-}   # empty: the agent's default
BUILD=${BUILD_DIR:-build}
KEEP=${KEEP:-0}
TIMEOUT_S=20   # per side and fault: no detection by then is a failed detection
HOLD_MIN_S=8   # the extra clients stay at least this long
EXTRA_CLIENTS=30   # the fault: this many idle connections on top of the usual 2-3

for bin in controller/vigil-controller agent/vigil-agent cli/vigil; do
  [ -x "$BUILD/$bin" ] ||
    { echo "missing $BUILD/$bin: ninja -C $BUILD vigil-controller vigil-agent vigil" >&2; exit 2; }
done
for tool in redis-server redis-cli prometheus prometheus-alertmanager prometheus-redis-exporter \
  python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: scripts/install-bench-deps.sh" >&2; exit 2; }
done
CONTROLLER_BIN=$(realpath "$BUILD/controller/vigil-controller")
AGENT_BIN=$(realpath "$BUILD/agent/vigil-agent")
VIGIL_BIN=$(realpath "$BUILD/cli/vigil")

W=$(mktemp -d /tmp/vigil-detection.XXXX); chmod 755 "$W"
PIDS=()
HOLD=""
FAILED_DETECTIONS=0
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}" $HOLD; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ] || [ "$FAILED_DETECTIONS" -gt 0 ] || [ "$KEEP" = 1 ]; then
    echo "logs kept in $W (controller.log, agent.log, watch.log, hook.log, prom.log, am.log)" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
free_port() { "$PWD/scripts/free-port"; }

# ---- Redis ----
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  >"$W/redis.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 40); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.25; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start (see $W/redis.log)" >&2; exit 1; }

# ---- Prometheus + Alertmanager, at their fastest settings ----
RE=$(free_port); PP=$(free_port); AM=$(free_port); WH=$(free_port)
prometheus-redis-exporter -redis.addr="redis://127.0.0.1:$REDIS_PORT" \
  -web.listen-address="127.0.0.1:$RE" >"$W/re.log" 2>&1 & PIDS+=($!)
cat >"$W/hook.py" <<'PY'
import http.server, sys, time, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for a in body.get("alerts", []):
            if a.get("status") == "firing":
                print(f"{time.time():.3f} firing {a['labels'].get('alertname')}", flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$W/hook.py" "$WH" >"$W/hook.log" 2>&1 & PIDS+=($!)
cat >"$W/am.yml" <<Y
route: {receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 24h}
receivers: [{name: hook, webhook_configs: [{url: 'http://127.0.0.1:$WH/', send_resolved: false}]}]
Y
prometheus-alertmanager --config.file="$W/am.yml" --storage.path="$W/am" \
  --web.listen-address="127.0.0.1:$AM" --cluster.listen-address= >"$W/am.log" 2>&1 & PIDS+=($!)
cat >"$W/rules.yml" <<'Y'
groups:
  - name: bench
    interval: 1s
    rules:
      - alert: TooManyRedisClients
        expr: redis_connected_clients > 20
        for: 0s
Y
cat >"$W/prom.yml" <<Y
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ['$W/rules.yml']
alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:$AM']}]}]}
scrape_configs: [{job_name: redis, static_configs: [{targets: ['127.0.0.1:$RE']}]}]
Y
prometheus --config.file="$W/prom.yml" --storage.tsdb.path="$W/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$W/prom.log" 2>&1 & PIDS+=($!)

# ---- Vigil: controller, one agent with the redis collector, a timestamped watch ----
CT=$(free_port)
cat >"$W/vigil-rules.yaml" <<'Y'
rules:
  - alert: TooManyRedisClients
    expr: redis_connected_clients > 20
    for: 0s
    severity: SEV3
    diagnostics: [redis_stats]
Y
# Newer controllers authenticate API callers: a commander may watch and resolve incidents.
if "$CONTROLLER_BIN" --help 2>&1 | grep -qE '^ +users '; then
  VIGIL_TOKEN=$("$CONTROLLER_BIN" users add bench --role commander --db="$W/vigil.db" 2>"$W/users.log")
  export VIGIL_TOKEN
fi
"$CONTROLLER_BIN" --listen="127.0.0.1:$CT" --db="$W/vigil.db" --insecure --http-listen=off \
  --rules="$W/vigil-rules.yaml" >"$W/controller.log" 2>&1 & PIDS+=($!)
cat >"$W/agent.yaml" <<Y
id: cache-1
labels: {role: cache}
journal: $W/agent.journal      # state (spool beside it) in the temp dir, not /var/lib/vigil
collectors:
  redis: {address: "127.0.0.1:$REDIS_PORT"}
Y
# The CLI speaks plain text to a loopback controller only when told to (newer builds).
CLI_FLAGS=(--controller="127.0.0.1:$CT")
if "$VIGIL_BIN" --help 2>&1 | grep -q -- --insecure; then CLI_FLAGS+=(--insecure); fi
vigil() { "$VIGIL_BIN" "${CLI_FLAGS[@]}" "$@"; }
for _ in $(seq 1 80); do vigil --timeout=1s agents >/dev/null 2>&1 && break; sleep 0.25; done
if ! err=$(vigil --timeout=1s agents 2>&1 >/dev/null); then
  echo "vigil cannot talk to the controller: $err (see $W/controller.log)" >&2
  exit 1
fi
AGENT_FLAGS=(--controller="127.0.0.1:$CT" --config="$W/agent.yaml" --insecure --interval=1s)
[ -n "$SENSE_EVERY" ] && AGENT_FLAGS+=(--sense-every="$SENSE_EVERY")
"$AGENT_BIN" "${AGENT_FLAGS[@]}" >"$W/agent.log" 2>&1 & AGENT_PID=$!; PIDS+=($AGENT_PID)
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
    sys.stdout.write(f"{time.time():.3f} {line.decode(errors='replace')}")
    sys.stdout.flush()
sys.exit(child.wait())
PY
python3 "$W/stamp.py" "$VIGIL_BIN" "${CLI_FLAGS[@]}" watch -o json \
  >"$W/watch.log" 2>"$W/watch.err" & PIDS+=($!)

sleep 8   # both stacks settle: first scrapes, agent connected and streaming
if ! grep -q redis_connected_clients <(vigil metrics cache-1 2>&1); then
  echo "warning: the agent reports no redis_connected_clients yet:" >&2
  vigil metrics cache-1 >&2 || true
fi

# ---- helpers over the logs ----
count() { grep -c -- "$2" "$1" || true; }                # lines of $1 containing $2
nth_time() { grep -- "$2" "$1" | sed -n "$3p" | cut -d' ' -f1; }  # time of the $3-th such line
incident_of() {  # the incident_id of the $1-th incident_opened line of the watch log
  grep -- '"kind":"incident_opened"' "$W/watch.log" | sed -n "$1p" | cut -d' ' -f2- |
    python3 -c 'import json,sys;print(json.loads(sys.stdin.read())["incident_id"])'
}
unresolved_incidents() {  # opened on the watch log and not resolved there yet
  python3 - "$W/watch.log" <<'PY'
import json, sys
opened, resolved = [], set()
for line in open(sys.argv[1]):
    try:
        e = json.loads(line.split(" ", 1)[1])
    except (IndexError, ValueError):
        continue
    if e.get("kind") == "incident_opened":
        opened.append(e["incident_id"])
    elif e.get("kind") == "resolved":
        resolved.add(e["incident_id"])
print(" ".join(i for i in opened if i not in resolved))
PY
}
resolve_incident() {
  vigil incident resolve "$1" "bench fault $2 over" >>"$W/resolve.log" 2>&1 ||
    echo "warning: could not resolve $1 (see $W/resolve.log)" >&2
}

# ---- the faults ----
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
AGENT_TICKS0=$(ticks "$AGENT_PID"); FAULTS_T0=$EPOCHREALTIME
OPENED='"kind":"incident_opened"'
ALERT_RESOLVED='"kind":"alert_resolved"'
: >"$W/runs.txt"
for i in $(seq 1 "$N"); do
  # An incident left open (a late detection) would take the next fault's alert: close it first.
  for id in $(unresolved_incidents); do resolve_incident "$id" "before $i"; done
  hook0=$(count "$W/hook.log" " firing ")
  open0=$(count "$W/watch.log" "$OPENED")
  res0=$(count "$W/watch.log" "$ALERT_RESOLVED")
  rm -f "$W/release" "$W/fault_t0"
  # A random phase, so faults land anywhere in the 1 s collection and scrape cycles.
  sleep "$(python3 -c 'import random;print(f"{random.random():.3f}")')"
  t0=$EPOCHREALTIME
  python3 - "$REDIS_PORT" "$W/release" "$HOLD_MIN_S" "$EXTRA_CLIENTS" "$W/fault_t0" <<'PY' &
import os, socket, sys, time
start = time.time()
# The fault starts with the first extra client, not when this interpreter was asked to start
# (which can take seconds on a loaded machine, and would be counted against both sides).
with open(sys.argv[5] + ".tmp", "w") as f:
    f.write(f"{time.time():.6f}")
os.rename(sys.argv[5] + ".tmp", sys.argv[5])
s = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(int(sys.argv[4]))]
# Held at least HOLD_MIN_S, then until released (both sides answered), at most 60 s.
def held():
    return time.time() - start
while held() < 60 and (held() < float(sys.argv[3]) or not os.path.exists(sys.argv[2])):
    time.sleep(0.05)
PY
  HOLD=$!
  deadline_us=$(( ${t0/./} + TIMEOUT_S * 1000000 ))
  while [ ! -s "$W/fault_t0" ] && [ "${EPOCHREALTIME/./}" -lt "$deadline_us" ]; do sleep 0.01; done
  [ -s "$W/fault_t0" ] && t0=$(cat "$W/fault_t0")
  vt=""; pt=""
  while :; do
    [ -z "$pt" ] && [ "$(count "$W/hook.log" " firing ")" -gt "$hook0" ] &&
      pt=$(nth_time "$W/hook.log" " firing " $((hook0 + 1)))
    [ -z "$vt" ] && [ "$(count "$W/watch.log" "$OPENED")" -gt "$open0" ] &&
      vt=$(nth_time "$W/watch.log" "$OPENED" $((open0 + 1)))
    { [ -n "$vt" ] && [ -n "$pt" ]; } && break
    [ "${EPOCHREALTIME/./}" -lt "$deadline_us" ] || break
    sleep 0.05
  done
  touch "$W/release"
  if [ -n "$vt" ]; then
    vlat=$(python3 -c "print(f'{$vt - $t0:.2f}')"); vtxt="$vlat s"
  else
    vlat=FAIL; vtxt="FAILED (no incident_opened within $TIMEOUT_S s)"
    FAILED_DETECTIONS=$((FAILED_DETECTIONS + 1))
  fi
  if [ -n "$pt" ]; then
    plat=$(python3 -c "print(f'{$pt - $t0:.2f}')"); ptxt="$plat s"
  else
    plat=FAIL; ptxt="FAILED (no webhook within $TIMEOUT_S s)"
    FAILED_DETECTIONS=$((FAILED_DETECTIONS + 1))
  fi
  echo "run $i: vigil $vtxt, prometheus+alertmanager $ptxt"
  echo "$i $vlat $plat" >>"$W/runs.txt"
  wait "$HOLD" || true
  HOLD=""
  sleep 6   # clients gone; Prometheus' alert resolved (as the anchor waits)
  # Vigil: the alert resolved on the incident's timeline, then the incident itself.
  if [ -n "$vt" ]; then
    for _ in $(seq 1 $((TIMEOUT_S * 20))); do
      [ "$(count "$W/watch.log" "$ALERT_RESOLVED")" -gt "$res0" ] && break
      sleep 0.05
    done
    [ "$(count "$W/watch.log" "$ALERT_RESOLVED")" -gt "$res0" ] ||
      echo "warning: run $i: no alert_resolved from vigil within $TIMEOUT_S s after the clients left" >&2
    resolve_incident "$(incident_of $((open0 + 1)))" "$i"
  fi
done

# ---- summary ----
AGENT_TICKS1=$(ticks "$AGENT_PID"); FAULTS_T1=$EPOCHREALTIME
python3 - "$W/runs.txt" <<'PY'
import math, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def summary(name, column):
    ok = sorted(float(r[column]) for r in rows if r[column] != "FAIL")
    failed = [r[0] for r in rows if r[column] == "FAIL"]
    if not ok:
        print(f"{name}: no detection in {len(rows)} faults")
        return None
    p99 = ok[max(0, math.ceil(0.99 * len(ok)) - 1)]  # nearest rank: the max for 20 faults
    med = statistics.median(ok)
    failures = f"; FAILED runs: {' '.join(failed)}" if failed else ""
    print(f"{name}: median {med:.2f} s, p99 {p99:.2f} s, min {ok[0]:.2f} s, max {ok[-1]:.2f} s"
          f" ({len(ok)}/{len(rows)} detected{failures})")
    return med, p99
print(f"fault -> detection over {len(rows)} faults (Redis clients +30, threshold 20):")
v = summary("vigil (fault -> incident_opened)", 1)
p = summary("prometheus+alertmanager (fault -> webhook)", 2)
if v and p:
    print(f"ratio of medians prometheus/vigil: {p[0] / v[0]:.2f}x")
    print(f"aims: vigil median <= 0.43 s: {'met' if v[0] <= 0.43 else 'NOT met'} ({v[0]:.2f} s); "
          f"p99 <= 1.0 s: {'met' if v[1] <= 1.0 else 'NOT met'} ({v[1]:.2f} s); "
          f">= 3x the peer's median: {'met' if p[0] / v[0] >= 3 else 'NOT met'} ({p[0] / v[0]:.2f}x)")
PY
python3 -c "
hz = $(getconf CLK_TCK); secs = $FAULTS_T1 - $FAULTS_T0
cpu = ($AGENT_TICKS1 - $AGENT_TICKS0) / hz
print(f'vigil-agent CPU over the faults: {cpu:.2f} s in {secs:.0f} s ({100 * cpu / secs:.2f} % of one core;'
      f' sensing every ${SENSE_EVERY:-100ms (default)})')"
# Both sides sample on a 1 s grid: the agent at its phase within each second of the wall clock
# (from its id; its first log line says it), Prometheus at offsets chosen when it started, kept on
# its monotonic timers (so they move if the wall clock is stepped). The offsets explain most of
# the spread of the ratio from one run to the next.
AGENT_PHASE=$(sed -n 's/.* every [^ ]* at +\([^ ]*\) .*/\1/p' "$W/agent.log" | head -1)
python3 - "$PP" "${AGENT_PHASE:-?}" <<'PY' || true
import json, re, sys, urllib.request
def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}", timeout=2) as r:
        return json.load(r)["data"]
def phase(ts):
    m = re.search(r":(\d\d(?:\.\d+)?)(?:Z|[+-])", ts)
    return f".{round((float(m.group(1)) % 1) * 1000):03d}" if m else "?"
scrape = get("/api/v1/targets")["activeTargets"][0]["lastScrape"]
evaluation = get("/api/v1/rules")["groups"][0]["lastEvaluation"]
print(f"phase within the second at the end: vigil agent collects at +{sys.argv[2]}; prometheus"
      f" scrapes at {phase(scrape)}, evaluates rules at {phase(evaluation)}")
PY
if [ "$FAILED_DETECTIONS" -gt 0 ]; then
  echo "$FAILED_DETECTIONS failed detection(s); controller log: $W/controller.log" >&2
  exit 1
fi
