#!/usr/bin/env bash
# Configures and builds everything into build/ (or $VIGIL_BUILD_DIR). Extra args go to cmake,
# e.g. scripts/build.sh -DVIGIL_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD_DIR" -G Ninja "${launcher[@]}" "$@" >/dev/null
ninja -C "$BUILD_DIR" -j"$(nproc)"
