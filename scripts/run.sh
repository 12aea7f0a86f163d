#!/usr/bin/env bash
# Quick start: installs the dependencies, builds, starts a controller (embedded SQLite under
# ./data) and an agent for this host, and shows `vigil agents`. Stop both with scripts/stop.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/as-root.sh scripts/install-deps.sh
scripts/build.sh
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
ADDRESS=${VIGIL_CONTROLLER:-127.0.0.1:7443}
mkdir -p data
scripts/stop.sh >/dev/null 2>&1 || true

nohup "$BUILD_DIR/controller/vigil-controller" --listen="$ADDRESS" --db=data/vigil.db --insecure \
  >data/controller.log 2>&1 &
echo $! >data/controller.pid
nohup "$BUILD_DIR/agent/vigil-agent" --controller="$ADDRESS" --config=deploy/examples/agent-local.yaml \
  --insecure >data/agent.log 2>&1 &
echo $! >data/agent.pid

# The agent's first round lands within two intervals.
for _ in $(seq 1 50); do
  if "$BUILD_DIR/cli/vigil" --controller="$ADDRESS" agents 2>/dev/null | grep -q connected; then break; fi
  sleep 0.2
done
"$BUILD_DIR/cli/vigil" --controller="$ADDRESS" agents
echo
echo "controller on $ADDRESS (log data/controller.log), agent log data/agent.log"
echo "try: $BUILD_DIR/cli/vigil metrics $(hostname) ; stop with scripts/stop.sh"
