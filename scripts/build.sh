#!/usr/bin/env bash
# Configures and builds everything into build/ (or $VIGIL_BUILD_DIR). Extra args go to cmake,
# e.g. scripts/build.sh -DVIGIL_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VIGIL_BUILD_DIR:-build}
launcher=()
# ccache for fresh build folders; an existing one keeps its own settings (no forced rebuild).
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja "${launcher[@]}" "$@" >/dev/null
ninja -C "$BUILD_DIR" -j"$(nproc)"
