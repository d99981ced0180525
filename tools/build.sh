#!/usr/bin/env bash
# Configures and builds r1dist into BUILD_DIR (default build/). Arguments go to the cmake
# configure step (-DOPTION=...); BUILD_TARGETS (space-separated) limits what is built.
# On the GPU machine, CMAKE_PREFIX_PATH must point at torch's cmake dir (launch/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "$@" >/dev/null
targets=()
for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "$JOBS" "${targets[@]}"
