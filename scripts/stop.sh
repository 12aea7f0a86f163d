#!/usr/bin/env bash
# Stops what scripts/run.sh started.
cd "$(dirname "$0")/.."
for name in agent controller; do
  if [ -f data/$name.pid ]; then
    kill "$(cat data/$name.pid)" 2>/dev/null && echo "stopped vigil-$name"
    rm -f data/$name.pid
  fi
done
