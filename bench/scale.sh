#!/usr/bin/env bash
# Issue 12's scale table: a release-built vigil-controller (fresh database per run) under
# build/bench/agent_loadgen's simulated agents, each on its own connection with the agent's
# reconnect logic. (1) Storms: N agents all connecting within 1 s (or, with SCALE_MODE=restart,
# the controller killed and restarted under N streaming agents): time until all N stream, drops,
# the CLI's ListAgents p99 (probed every 200 ms), the controller's peak CPU and RSS, and the
# simulator's own CPU (it shares the cores). (2) Steady state after the largest storm: samples/s,
# the controller's CPU share and RSS per agent (slope between the smallest and largest run).
# RSS grows for about two minutes after a storm, then stays flat (the histograms' minute windows
# fill in the first; the rest was not broken down): the default window under-reports it by about
# 5 % (1,000 and 3,000 agents, 2026-12-02: 85 KiB per agent after 25 s, 89.8 at the plateau).
# SCALE_STEADY=150 gives the plateau.
# Each run is bounded (SCALE_TIMEOUT to converge, then SCALE_HOLD and SCALE_STEADY), converged or
# not, and the table says what was seen.
#
#   bench/scale.sh                 # plain text, 1,000 / 3,000 / 10,000 agents
#   SCALE_SIZES="1000 3000" SCALE_TLS=both bench/scale.sh
# Environment: SCALE_SIZES, SCALE_TLS (0 | 1 | both), SCALE_MODE (start | restart),
# SCALE_TIMEOUT (60), SCALE_HOLD (10), SCALE_STEADY (30), SCALE_PROCESSES (4),
# SCALE_PRE_RAMP (restart mode: seconds to connect before the kill; default agents/100),
# SCALE_CLIENT (h2 | grpc: the simulated agents' client; default h2 for plain text, which takes
# about a third of the shared cores gRPC's client does at 10,000 agents and 60 % at 3,000, and
# grpc for mutual TLS),
# SCALE_PROBE_CALL (list-agents | list-incidents: what the CLI probe calls; default list-agents,
# the whole fleet's listing, 2.4 MB at 10,000 agents),
# SCALE_SEND_SPREAD_MS (each agent's rounds fall at its own offset in [0, this) ms past each
# interval; default: the interval, as vigil-agent phases its rounds; 20 models --aligned-rounds),
# SCALE_AGENT_LISTEN (1: the agents dial the controller's --agent-listen, whose accept queue is
# SCALE_AGENT_BACKLOG (default: the controller's, 64) connections, and the CLI probe its --listen;
# 0: everything on --listen with the system's queue, as before 2026-12-03),
# SCALE_KEEP=1 keeps the work folder (logs, timelines). Needs a build (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${VIGIL_BUILD_DIR:-build}
CTL=$BUILD/controller/vigil-controller
LG=$BUILD/bench/agent_loadgen
SIZES=${SCALE_SIZES:-1000 3000 10000}
TLS=${SCALE_TLS:-0}
MODE=${SCALE_MODE:-start}
TIMEOUT=${SCALE_TIMEOUT:-60}
HOLD=${SCALE_HOLD:-10}
STEADY=${SCALE_STEADY:-30}
PROCS=${SCALE_PROCESSES:-4}
CLIENT=${SCALE_CLIENT:-}
PROBE_CALL=${SCALE_PROBE_CALL:-list-agents}
SEND_SPREAD_MS=${SCALE_SEND_SPREAD_MS:-0}
AGENT_LISTEN=${SCALE_AGENT_LISTEN:-1}
AGENT_BACKLOG=${SCALE_AGENT_BACKLOG:-}
case "$AGENT_LISTEN" in 0 | 1) ;; *) echo "scale.sh: SCALE_AGENT_LISTEN is 0 or 1" >&2; exit 2 ;; esac
case "$PROBE_CALL" in list-agents | list-incidents) ;; *) echo "scale.sh: SCALE_PROBE_CALL is list-agents or list-incidents" >&2; exit 2 ;; esac
case "$CLIENT" in "" | h2 | grpc) ;; *) echo "scale.sh: SCALE_CLIENT is h2 or grpc" >&2; exit 2 ;; esac
# In a real fleet the agents run on other hosts. Here they share the controller's 2 cores, so the
# simulator's processes run at a lower priority (nice) and the controller at the normal one: the
# controller is measured, not the simulator's share of the cores. The coordinator, which runs the
# CLI probe, stays at the normal priority too, as a commander's CLI would (before 2026-12-01 late
# it ran at the simulator's, so CLI p99 included the simulator's own starvation).
# SCALE_SIM_NICE=0 puts them all on equal terms.
SIM_NICE=${SCALE_SIM_NICE:-10}

for f in "$CTL" "$LG"; do
  [ -x "$f" ] || { echo "scale.sh: $f is missing: build first (scripts/build.sh)" >&2; exit 1; }
done
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}  # CMakeLists.txt's default when none is given
if grep -q '^VIGIL_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  echo "scale.sh: warning: $BUILD is built with sanitizers: figures are not release figures" >&2
  BUILD_TYPE="$BUILD_TYPE+sanitizers"
fi
case "$BUILD_TYPE" in
  Release | RelWithDebInfo | MinSizeRel) ;;
  *) echo "scale.sh: warning: $BUILD is a '$BUILD_TYPE' build, not a release build" >&2 ;;
esac
case "$MODE" in start | restart) ;; *) echo "scale.sh: SCALE_MODE is start or restart" >&2; exit 2 ;; esac
case "$TLS" in 0) TRANSPORTS=plain ;; 1) TRANSPORTS=mtls ;; both) TRANSPORTS="plain mtls" ;;
  *) echo "scale.sh: SCALE_TLS is 0, 1 or both" >&2; exit 2 ;; esac
# Each agent is a socket in the simulator and one in the controller.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

W=$(mktemp -d /tmp/vigil-scale.XXXX)
LGPID=""
cleanup() {
  [ -n "$LGPID" ] && kill "$LGPID" 2>/dev/null || true
  if [ "${SCALE_KEEP:-0}" = 1 ]; then echo "scale.sh: logs kept in $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
port() { "$PWD/scripts/free-port"; }
# Value of key $2 in the report line starting with $1 in file $3 ("" when absent).
field() { awk -v kind="$1" -v key="$2" '$1==kind { for (i=2;i<=NF;i++) { split($i,kv,"="); if (kv[1]==key) print substr($i, length(key)+2) } }' "$3"; }

if [[ " $TRANSPORTS " == *" mtls "* ]]; then
  # The CA, the controller's certificate and the probe's (user "bench"); agents' certificates
  # are made by the load generator from the CA key, one per agent (SAN = its id).
  bash scripts/dev-ca.sh "$W/tls" --user bench >/dev/null
fi

# run NAME AGENTS TRANSPORT: one controller, one storm and its steady window; report in $W/NAME.
run() {
  local name=$1 agents=$2 transport=$3 dir="$W/$1" p
  mkdir -p "$dir"
  p=$(port)
  local token tls_ctl=(--insecure) auth=()
  # A viewer for the probe (the API takes a bearer token on either transport).
  token=$("$CTL" users add bench --role viewer --db="$dir/vigil.db" 2>/dev/null)
  auth=(--token="$token")
  if [ "$transport" = mtls ]; then
    tls_ctl=(--tls-ca="$W/tls/ca.pem" --tls-cert="$W/tls/controller.pem" --tls-key="$W/tls/controller.key")
    auth+=(--tls-ca="$W/tls/ca.pem" --tls-ca-key="$W/tls/ca.key" --tls-cert="$W/tls/user-bench.pem" --tls-key="$W/tls/user-bench.key")
  fi
  # The agents' own address (--agent-listen), or the CLI's.
  local agent_target="127.0.0.1:$p" agent_flags=""
  if [ "$AGENT_LISTEN" = 1 ]; then
    agent_target="127.0.0.1:$(port)"
    agent_flags="--agent-listen=$agent_target${AGENT_BACKLOG:+ --agent-listen-backlog=$AGENT_BACKLOG}"
  fi
  local cmd="'$CTL' --listen=127.0.0.1:$p $agent_flags --db='$dir/vigil.db' ${tls_ctl[*]} --log-level=warn --http-listen=off 2>>'$dir/controller.log'"
  local pre=${SCALE_PRE_RAMP:-$(( (agents + 99) / 100 ))}
  echo "scale.sh: $name: $agents agents, $transport, $MODE storm (timelines in $dir/timeline.txt)" >&2
  # The tool bounds itself; timeout(1) only guards against a hang.
  timeout --kill-after=10 $(( TIMEOUT + HOLD + STEADY + pre + 150 )) "$LG" \
    --target="$agent_target" --probe-target="127.0.0.1:$p" --controller-cmd="$cmd" --agents="$agents" --processes="$PROCS" \
    --sim-nice="$SIM_NICE" ${CLIENT:+--client="$CLIENT"} --probe-call="$PROBE_CALL" \
    --send-spread-ms="$SEND_SPREAD_MS" \
    --mode="$MODE" --ramp=1 --pre-ramp="$pre" --pre-timeout="$TIMEOUT" --timeout="$TIMEOUT" \
    --hold="$HOLD" --steady="$STEADY" --label="$transport" "${auth[@]}" \
    >"$dir/report.txt" 2>"$dir/timeline.txt" &
  LGPID=$!
  wait "$LGPID" || echo "scale.sh: $name: agent_loadgen exited with status $?" >&2
  LGPID=""
  grep -c "silent for" "$dir/controller.log" >"$dir/silent.txt" 2>/dev/null || echo 0 >"$dir/silent.txt"
  grep -m3 -E "^(storm|steady)|^loadgen:" "$dir/report.txt" "$dir/timeline.txt" >&2 || true
  # A run that did not converge: what its agents not streaming were doing at the bound.
  grep -h "agents not streaming" "$dir/timeline.txt" >&2 || true
}

for transport in $TRANSPORTS; do
  for n in $SIZES; do
    run "$transport-$n" "$n" "$transport"
  done
done

# The table.
CORES=$(nproc)
echo
echo "Vigil scale benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $CORES cores, build $BUILD ($BUILD_TYPE), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
if [ "$MODE" = restart ]; then
  echo "storm: the controller killed (SIGKILL) and restarted under N streaming agents, timed from the restart; converge bound ${TIMEOUT} s, then ${HOLD} s held; steady: ${STEADY} s window after the storm"
else
  echo "storm: every agent's first attempt within 1 s of a running controller; converge bound ${TIMEOUT} s, then ${HOLD} s held; steady: ${STEADY} s window after the storm"
fi
if [ "$AGENT_LISTEN" = 1 ]; then
  echo "agents dial the controller's --agent-listen (accept queue ${AGENT_BACKLOG:-64}), the CLI probe its --listen"
else
  echo "agents and the CLI probe dial the controller's --listen (accept queue: net.core.somaxconn, $(cat /proc/sys/net/core/somaxconn))"
fi
echo "50 series per agent (45 gauges + 5 histograms) every 1 s; each agent its own TCP connection; simulator in $PROCS processes on the same cores, at nice $SIM_NICE (the controller and the CLI probe at 0); simulator's client: ${CLIENT:-h2 for plain text, grpc for mTLS}"
echo
printf "| %-6s | %-9s | %6s | %-22s | %-15s | %-21s | %9s | %9s | %8s | %-41s |\n" \
  run transport agents "converged (all N streaming)" "dropped (agents)" "CLI p99" "ctl CPU pk" "ctl RSS pk" "sim CPU" "steady: samples/s, ctl CPU share, RSS/agent"
printf "|%s|\n" "--------|-----------|--------|------------------------|-----------------|-----------------------|-----------|-----------|----------|-------------------------------------------"
for transport in $TRANSPORTS; do
  first=""; last=""
  for n in $SIZES; do
    r="$W/$transport-$n/report.txt"
    [ -f "$r" ] || continue
    [ -z "$first" ] && first=$n
    last=$n
  done
  for n in $SIZES; do
    r="$W/$transport-$n/report.txt"
    if ! grep -q '^storm' "$r" 2>/dev/null; then
      printf "| %-6s | %-9s | %6s | %-22s |\n" storm "$transport" "$n" "no report (see $W/$transport-$n)"
      continue
    fi
    conv=$(field storm converged "$r"); cs=$(field storm converge_s "$r"); end=$(field storm streaming_end "$r")
    if [ "$conv" = yes ]; then conv_text="yes, ${cs} s"; else conv_text="no: $end/$n after ${TIMEOUT} s"; fi
    drops="$(field storm drops "$r") ($(field storm drop_agents "$r"))"
    cli="$(field storm cli_p99_ms "$r") ms"
    failed=$(field storm cli_failed "$r")
    [ "$failed" != 0 ] && cli="$cli, $failed/$(field storm cli_probes "$r") failed"
    steady_text="–"
    if [ "$n" = "$last" ] && grep -q '^steady' "$r"; then
      sps=$(field steady samples_acked_per_s "$r"); share=$(field steady ctl_cpu_share_of_machine "$r")
      s_end=$(field steady streaming_end "$r")
      slope="n/a"
      f="$W/$transport-$first/report.txt"
      if [ "$first" != "$last" ] && grep -q '^steady' "$f"; then
        # Only between runs whose agents were (nearly) all streaming: a slope over a collapsed
        # fleet would divide leftover memory by a handful of agents.
        slope=$(python3 -c "
a0,n0,r0=$(field steady streaming_end "$f"),$first,$(field steady ctl_rss_mb "$f")
a1,n1,r1=$s_end,$last,$(field steady ctl_rss_mb "$r")
if a0 < 0.9*n0 or a1 < 0.9*n1 or a1 == a0:
    print('n/a (%d/%d and %d/%d streaming)' % (a0, n0, a1, n1))
else:
    print('%.1f KiB' % ((r1-r0)*1024/(a1-a0)))")
      fi
      steady_text="$sps/s ($s_end streaming), $(python3 -c "print('%.0f %%' % (100*$share))"), $slope; sim $(python3 -c "print('%.0f %%' % (100*$(field steady sim_cpu_cores "$r")))")"
    fi
    printf "| %-6s | %-9s | %6s | %-22s | %-15s | %-21s | %7s %% | %6s MB | %6s %% | %-41s |\n" \
      storm "$transport" "$n" "$conv_text" "$drops" "$cli" \
      "$(field storm ctl_peak_cpu_pct "$r")" "$(field storm ctl_peak_rss_mb "$r")" \
      "$(field storm sim_cpu_pct "$r")" "$steady_text"
  done
done
echo
echo "dropped: streams the controller ended after welcoming them (distinct agents). Per run: when every agent had made its"
echo "first attempt (the storm's real spread; the simulator's CPU bounds it), the controller's 'silent for' warnings, refusals:"
for transport in $TRANSPORTS; do
  for n in $SIZES; do
    d="$W/$transport-$n"
    [ -f "$d/report.txt" ] || continue
    echo "  $transport-$n: every agent tried by $(field storm all_attempted_s "$d/report.txt") s, controller waiting for a CPU $(field storm ctl_runqueue_wait_pct "$d/report.txt") % of a core (mean), silent=$(cat "$d/silent.txt") (of which the simulated agent had itself written nothing for the timeout: $(field storm drops_cancelled_own_gap "$d/report.txt")) refused_exhausted=$(field storm refused_exhausted "$d/report.txt") retry_hints=$(field storm retry_hints "$d/report.txt") welcome_timeouts=$(field storm welcome_timeouts "$d/report.txt") reconnects=$(field storm reconnects "$d/report.txt") unacked_batches=$(field storm batches_unacked "$d/report.txt") cli_failed=$(field storm cli_failed "$d/report.txt")/$(field storm cli_probes "$d/report.txt")"
    before=$(field storm streaming_before_restart "$d/report.txt")
    if [ "$MODE" = restart ] && [ -n "$before" ] && [ "$before" != "$n" ]; then
      echo "  $transport-$n: only $before of $n agents streamed before the kill: this storm is not one of $n (SCALE_PRE_RAMP, SCALE_TIMEOUT)"
    fi
  done
done
echo "controller over time (every 5 s from the start of each run: streaming agents, CPU % of one core, RSS MB):"
for transport in $TRANSPORTS; do
  for n in $SIZES; do
    t="$W/$transport-$n/timeline.txt"
    [ -f "$t" ] || continue
    printf "  %s:" "$transport-$n"
    awk '/^\[t=/ { if (++k % 5) next; t = $0; sub(/^\[t= */, "", t); sub(/s\].*/, "", t); st = c = r = "?"
      for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "streaming") { split(kv[2], x, "/"); st = x[1] }
        else if (kv[1] == "ctl_cpu") c = kv[2]; else if (kv[1] == "ctl_rss") r = kv[2] }
      printf " %.0fs:%s,%s,%s", t, st, c, r }' "$t"
    echo
  done
done
echo "CLI p99: $([ "$PROBE_CALL" = list-incidents ] && echo ListIncidents || echo ListAgents) every 200 ms during the storm, answers only; failed calls (refused, or over 5 s) counted apart."
echo "CPU figures are % of one core (the machine has $CORES); the steady CPU share is of the whole machine."
