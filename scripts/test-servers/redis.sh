#!/usr/bin/env bash
# Runs a private redis-server in the foreground on 127.0.0.1:PORT, nothing persisted.
# Usage: redis.sh DIR PORT
set -euo pipefail
DIR=$1 PORT=$2
mkdir -p "$DIR/redis"
exec redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR/redis" \
  --daemonize no --loglevel warning
