#!/usr/bin/env bash
# On the GPU machine (Ubuntu 24.04, libtorch 2.11+cu130 inside the Python torch install,
# toml++ carried in .deps/toml): build r1dist against CUDA libtorch and run the whole suite
# (ctest -j 8) REPEAT times (default 1; SKIP_BUILD=1 reuses build-gpu from an earlier call
# on the same machine). Logs go to $OUT (or /tmp/r1dist-gpu) for the caller to keep.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1dist-gpu}
mkdir -p "$OUT"
source launch/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  BUILD_DIR=build-gpu JOBS=16 bash tools/build.sh 2>&1 | tail -n 30 | tee "$OUT/build.log"
  echo "build: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/build.log"
fi
[ -x build-gpu/tests/r1dist_torch_tests ] || { echo "build failed"; exit 1; }
for k in $(seq 1 "${REPEAT:-1}"); do
  t1=$(date +%s)
  (cd build-gpu && ctest --output-on-failure -j 8 > "$OUT/ctest_$k.log" 2>&1)
  echo "ctest -j 8 run $k: rc $?, $(( $(date +%s) - t1 )) s: $(grep -E 'tests passed' "$OUT/ctest_$k.log")"
  grep -E "\*\*\*|SEGFAULT" "$OUT/ctest_$k.log" | head -n 20
done
./build-gpu/tests/r1dist_torch_tests --gtest_filter='*Parity*' 2>&1 | grep -E "rel err|OK|FAILED|SKIPPED" | tee "$OUT/parity.log"
# When the layer check fails here, keep the full dependency list of the offending objects.
if ! bash tools/check_layers.sh build-gpu > "$OUT/layers.txt" 2>&1; then
  for o in $(sed -n 's/^core object \(.*\) reads torch headers:$/\1/p' "$OUT/layers.txt"); do
    ninja -C build-gpu -t deps "$o" > "$OUT/deps_$(basename "$o").txt"
    ninja -C build-gpu -t commands "$o" | tail -n 1 > "$OUT/cmd_$(basename "$o").txt"
  done
fi
