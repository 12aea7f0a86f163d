#!/usr/bin/env bash
# Installs every Debian 12 package Vigil needs to build, test and benchmark. Idempotent; run as root.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "install-deps: run as root (it calls apt-get)" >&2; exit 2; fi
BUILD=(build-essential cmake ninja-build pkg-config ccache
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev libgrpc-dev
  libabsl-dev libspdlog-dev libfmt-dev libsqlite3-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev zlib1g-dev libpqxx-dev libhiredis-dev
  libre2-dev
  # The storm simulator's HTTP/2 client (bench/loadgen/h2_fleet.cc).
  libnghttp2-dev
  # vigil-controller's allocator (CMakeLists.txt: VIGIL_JEMALLOC).
  libjemalloc-dev
  # libpq's own static helpers (libpgcommon_shlib.a, libpgport_shlib.a) for the portable agent.
  postgresql-server-dev-15)
# The fuzzing build (scripts/fuzz.sh): clang with its libFuzzer and sanitizer runtimes.
FUZZ=(clang libclang-rt-14-dev)
# Real servers the integration tests start on loopback, and the tools they drive.
SERVERS=(postgresql redis-server nginx-light logrotate supervisor sqlite3 procps python3 openssl
  prometheus-alertmanager iproute2 nftables)
# A real Prometheus (and its promtool) scraping the fleet page.
SERVERS+=(prometheus)
# The review page's test and screenshots: headless Chromium driven over its DevTools protocol
# (scripts/chromium_cdp.py), a font for its pages, and curl for scripts/review-screenshots.sh.
SERVERS+=(chromium python3-websocket fonts-dejavu-core curl)
# Writes real journal files for the journal_vacuum action's test (journalctl --directory).
SERVERS+=(systemd-journal-remote)
# Checking the Debian packages (tests/packaging).
PACKAGING=(lintian)
# Deploying with the Ansible collection (deploy/ansible) to test hosts reached over SSH
# (tests/deploy): only with --deploy (scripts/test-deploy.sh), as scripts/test.sh does not run it.
DEPLOY=()
if [ "${1:-}" = --deploy ]; then
  DEPLOY=(ansible openssh-server openssh-client bc)
  shift
fi
missing=()
for p in "${BUILD[@]}" "${FUZZ[@]}" "${SERVERS[@]}" "${PACKAGING[@]}" "${DEPLOY[@]+"${DEPLOY[@]}"}" "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packaged services must not start on their default ports: tests start their own on loopback.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
