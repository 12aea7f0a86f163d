#!/usr/bin/env bash
# Footprint of vigil-agent with all four collectors at 1 s against Debian's four Prometheus
# exporters (node, postgres, redis, nginx) scraped every 1 s by a real Prometheus, in the same
# run, on the same real servers, under the same light nginx traffic. Prints RSS, CPU share and
# wake-ups per second (context switches of all the process's threads: each sleep that ends is
# one). Needs scripts/install-bench-deps.sh and a build (scripts/build.sh).
# Usage: bench/footprint.sh [WINDOW_S] [all]; VIGIL_AGENT=PATH measures another agent binary.
# With `all`, the agent also runs every other collector against the same servers: app_log on a
# log the traffic loop writes, http_probe and nginx_status on nginx, prometheus scraping the node
# exporter's /metrics (five families), Redis key samples and Celery queues, disk_usage_top.
set -euo pipefail
cd "$(dirname "$0")/.."
WIN=${1:-60}
ALL=${2:-}
BUILD=${VIGIL_BUILD_DIR:-build}
AGENT_BIN=${VIGIL_AGENT:-$BUILD/agent/vigil-agent}
W=$(mktemp -d /tmp/vigil-footprint.XXXX); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$W"; }
trap cleanup EXIT
port() { "$PWD/scripts/free-port"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
# Voluntary and involuntary context switches summed over the process's threads.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END{print s+0}'; }

PG=$(port); RD=$(port); NX=$(port)
scripts/test-servers/postgres.sh "$W" "$PG" >"$W/pg.log" 2>&1 & PIDS+=($!)
scripts/test-servers/redis.sh "$W" "$RD" >"$W/redis.log" 2>&1 & PIDS+=($!)
scripts/test-servers/nginx.sh "$W" "$NX" 1 >"$W/nginx.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do [ -f "$W/pg/ready" ] && break; sleep 0.2; done

# Vigil: a controller and one agent with host, nginx, postgres and redis collectors.
CT=$(port)
"$BUILD/controller/vigil-controller" --listen=127.0.0.1:$CT --db="$W/vigil.db" --insecure --log-level=warn & PIDS+=($!)
cat >"$W/agent.yaml" <<Y
id: bench
collectors:
  host: {}
  nginx: {access_log: $W/nginx/access.log, log_format: '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status \$body_bytes_sent "\$http_referer" "\$http_user_agent" \$request_time \$upstream_response_time'}
  postgres: {dsn: "host=127.0.0.1 port=$PG user=vigil dbname=postgres"}
  redis: {address: "127.0.0.1:$RD"}
Y
NE=$(port); PE=$(port); RE=$(port); XE=$(port); PP=$(port)
if [ "$ALL" = all ]; then
  cat >"$W/agent.yaml" <<Y
id: bench
collectors:
  host: {disk_usage_dirs: [$W]}
  nginx: {access_log: $W/nginx/access.log, log_format: '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status \$body_bytes_sent "\$http_referer" "\$http_user_agent" \$request_time \$upstream_response_time'}
  postgres: {dsn: "host=127.0.0.1 port=$PG user=vigil dbname=postgres"}
  redis: {address: "127.0.0.1:$RD", celery_queues: [celery], key_patterns: ["azals:ratelimit:*"]}
  app_log: {files: [$W/app.log]}
  http_probe: {targets: [{name: health, url: "http://127.0.0.1:$NX/static"}]}
  nginx_status: {url: "http://127.0.0.1:$NX/stub_status"}
  prometheus:
    targets:
      - name: node
        url: http://127.0.0.1:$NE/metrics
        prefix: ne_
        series: {node_cpu_seconds_total: counter, node_memory_MemAvailable_bytes: gauge,
                 node_network_receive_bytes_total: counter, node_filesystem_avail_bytes: gauge,
                 node_load1: gauge}
Y
fi
"$AGENT_BIN" --controller=127.0.0.1:$CT --config="$W/agent.yaml" --interval=1s --insecure --log-level=warn & AGENT=$!; PIDS+=($AGENT)

# The exporters and a Prometheus scraping them every second.
prometheus-node-exporter --web.listen-address=127.0.0.1:$NE >"$W/ne.log" 2>&1 & NEP=$!; PIDS+=($NEP)
DATA_SOURCE_NAME="postgresql://postgres@127.0.0.1:$PG/postgres?sslmode=disable" \
  prometheus-postgres-exporter --web.listen-address=127.0.0.1:$PE >"$W/pe.log" 2>&1 & PEP=$!; PIDS+=($PEP)
prometheus-redis-exporter -redis.addr=redis://127.0.0.1:$RD -web.listen-address=127.0.0.1:$RE >"$W/re.log" 2>&1 & REP=$!; PIDS+=($REP)
prometheus-nginx-exporter -nginx.scrape-uri=http://127.0.0.1:$NX/stub_status -web.listen-address=127.0.0.1:$XE >"$W/xe.log" 2>&1 & XEP=$!; PIDS+=($XEP)
cat >"$W/prom.yml" <<Y
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: all
    static_configs: [{targets: ['127.0.0.1:$NE','127.0.0.1:$PE','127.0.0.1:$RE','127.0.0.1:$XE']}]
Y
prometheus --config.file="$W/prom.yml" --storage.tsdb.path="$W/tsdb" --web.listen-address=127.0.0.1:$PP >"$W/prom.log" 2>&1 & PROM=$!; PIDS+=($PROM)

# Light, steady traffic for both sides to see: 20 requests/s.
( while true; do curl -s -o /dev/null "http://127.0.0.1:$NX/static?x=$RANDOM"; sleep 0.05; done ) & PIDS+=($!)
# and, for app_log, an application log with an error line a second.
( i=0; while true; do i=$((i+1)); echo "2026-01-01 00:00:00 INFO [api] request $i" >>"$W/app.log"
  [ $((i % 20)) = 0 ] && echo "2026-01-01 00:00:00 ERROR [billing] failed $i" >>"$W/app.log"; sleep 0.05; done ) & PIDS+=($!)

sleep 10   # warm-up
HZ=$(getconf CLK_TCK)
declare -A T0 S0
for p in $AGENT $NEP $PEP $REP $XEP $PROM; do T0[$p]=$(ticks "$p"); S0[$p]=$(switches "$p"); done
sleep "$WIN"
printf "%-24s %9s %8s %10s\n" process rss_MB cpu_% wakeups/s
srss=0; scpu=0; swake=0
for pair in vigil-agent:$AGENT node-exporter:$NEP postgres-exporter:$PEP redis-exporter:$REP nginx-exporter:$XEP prometheus:$PROM; do
  n=${pair%%:*}; p=${pair##*:}
  r=$(rss_kb "$p"); c=$(python3 -c "print(round(100*($(ticks "$p")-${T0[$p]})/$HZ/$WIN,3))")
  w=$(python3 -c "print(round(($(switches "$p")-${S0[$p]})/$WIN,1))")
  printf "%-24s %9.1f %8s %10s\n" "$n" "$(echo "$r/1024" | bc -l)" "$c" "$w"
  case $n in
    vigil-agent) arss=$r; acpu=$c; awake=$w;;
    prometheus) ;;
    *) srss=$((srss+r)); scpu=$(python3 -c "print(round($scpu+$c,3))"); swake=$(python3 -c "print(round($swake+$w,1))");;
  esac
done
printf "%-24s %9.1f %8s %10s\n" "sum of 4 exporters" "$(echo "$srss/1024" | bc -l)" "$scpu" "$swake"
python3 -c "print('agent / exporters: RSS %.3f, CPU %.3f, wake-ups %.3f' % ($arss/$srss, $acpu/$scpu if $scpu else float('nan'), $awake/$swake if $swake else float('nan')))"
echo "window ${WIN}s; exporters scraped every 1 s by prometheus (not counted in the sum); agent interval 1 s${ALL:+; agent with every collector}"
