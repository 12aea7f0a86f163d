#!/usr/bin/env bash
# Quick start: installs the dependencies, builds, makes development certificates under data/tls
# (scripts/dev-ca.sh; an existing CA is kept), starts a controller (embedded SQLite under ./data)
# and an agent for this host, both over mutual TLS, and shows `vigil agents`. Stop both with
# scripts/stop.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/as-root.sh scripts/install-deps.sh
scripts/build.sh
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
ADDRESS=${VIGIL_CONTROLLER:-127.0.0.1:7443}
HOST=$(hostname)
TLS=$PWD/data/tls
mkdir -p data
scripts/stop.sh >/dev/null 2>&1 || true

# The agent's id is this host's name, and its certificate must name it: the controller refuses
# an agent whose id its certificate does not carry.
scripts/dev-ca.sh "$TLS" --agent "$HOST" --user admin
# Under sudo, the CLI's certificate and key go to the person who ran it, so the CLI needs no sudo.
if [ -n "${SUDO_UID:-}" ]; then
  chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$TLS/user-admin.pem" "$TLS/user-admin.key"
fi

# Every API call needs a token: an admin for the person running the quick start, made once and
# kept (mode 0600) in data/tls/admin.token.
TOKEN_FILE=$TLS/admin.token
if [ ! -s "$TOKEN_FILE" ]; then
  (umask 077 && "$BUILD_DIR/controller/vigil-controller" users add "admin-$(date +%s)" --role admin \
    --db=data/vigil.db >"$TOKEN_FILE")
fi
if [ -n "${SUDO_UID:-}" ]; then
  chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$TOKEN_FILE"
fi

# --config '': a quick start under ./data, whatever a packaged /etc/vigil/controller.yaml says.
nohup "$BUILD_DIR/controller/vigil-controller" --config '' --listen="$ADDRESS" --db=data/vigil.db \
  --tls-ca="$TLS/ca.pem" --tls-cert="$TLS/controller.pem" --tls-key="$TLS/controller.key" \
  >data/controller.log 2>&1 &
echo $! >data/controller.pid

# The CLI reads its certificate from the environment (flags would do too).
export VIGIL_TLS_CA=$TLS/ca.pem VIGIL_TLS_CERT=$TLS/user-admin.pem VIGIL_TLS_KEY=$TLS/user-admin.key
VIGIL_TOKEN=$(cat "$TOKEN_FILE")
export VIGIL_TOKEN

# The agent starts once the controller answers (any answer, even a refusal): a first attempt
# that finds nothing listening costs it seconds of reconnect backoff.
for _ in $(seq 1 50); do
  if error=$("$BUILD_DIR/cli/vigil" --controller="$ADDRESS" agents 2>&1 >/dev/null) ||
    [[ "$error" != *"cannot reach controller"* ]]; then
    break
  fi
  if ! kill -0 "$(cat data/controller.pid)" 2>/dev/null; then
    echo "vigil-controller did not start:" >&2
    tail -5 data/controller.log >&2
    exit 1
  fi
  sleep 0.2
done
nohup "$BUILD_DIR/agent/vigil-agent" --controller="$ADDRESS" --config=deploy/examples/agent-local.yaml \
  --id="$HOST" --tls-ca="$TLS/ca.pem" --tls-cert="$TLS/agent-$HOST.pem" \
  --tls-key="$TLS/agent-$HOST.key" >data/agent.log 2>&1 &
echo $! >data/agent.pid

# The agent's first round lands within two intervals.
for _ in $(seq 1 50); do
  if "$BUILD_DIR/cli/vigil" --controller="$ADDRESS" agents 2>/dev/null | grep -q connected; then break; fi
  sleep 0.2
done
"$BUILD_DIR/cli/vigil" --controller="$ADDRESS" agents
echo
echo "controller on $ADDRESS over mutual TLS (log data/controller.log), agent log data/agent.log"
echo "certificates in data/tls (scripts/dev-ca.sh data/tls --agent ID --user NAME makes more)"
echo "to use the CLI as 'admin':"
echo "  export VIGIL_TLS_CA=$VIGIL_TLS_CA VIGIL_TLS_CERT=$VIGIL_TLS_CERT VIGIL_TLS_KEY=$VIGIL_TLS_KEY"
echo "  export VIGIL_TOKEN=\$(cat $TOKEN_FILE)"
echo "try: $BUILD_DIR/cli/vigil metrics $HOST ; stop with scripts/stop.sh"
