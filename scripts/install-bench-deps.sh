#!/usr/bin/env bash
# The peer stack the benchmarks compare against (Debian packages), on top of install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh prometheus prometheus-alertmanager prometheus-node-exporter \
  prometheus-postgres-exporter prometheus-redis-exporter prometheus-nginx-exporter ansible curl bc
