#!/usr/bin/env bash
# The fleet deployment test, apart from scripts/test.sh because it takes about half an hour on a
# 2-core machine: installs the packages it needs, builds, then runs deploy/ansible's playbook over
# SSH against three hosts made of network, mount and PID namespaces (tests/deploy/ansible_test.sh):
# first deployment, a second run that changes nothing, a rolling upgrade, a broken config refused
# by validate:, an agent that cannot reconnect stopping the rollout, and the agents moved to a
# port of their own. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/as-root.sh scripts/install-deps.sh --deploy
scripts/build.sh "$@"
ctest --test-dir "${VIGIL_BUILD_DIR:-build}" --output-on-failure -L deploy
