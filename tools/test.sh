#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: install, configure, build; the
# safetensors reader, model-loading, tokenizer, data, checkpoint and optimizer tests under
# AddressSanitizer + UBSan; then
# every test through ctest (last, so its summary closes the output).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
source launch/env.sh
bash tools/build.sh
if [ "${R1DIST_SKIP_ASAN:-0}" != 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo BUILD_TARGETS=r1dist_tests bash tools/build.sh -DR1DIST_ASAN=ON
  ASAN_OPTIONS=detect_leaks=0 ./build-asan/tests/r1dist_tests \
    --gtest_filter='Safetensors*:Qwen2Loading*:Bnb*:Tokenizer*:Data*:Checkpoint*:Optim*:LayerCheckpointing*-TokenizerR1.TenMegabyteLine'
fi
(cd build && ctest --output-on-failure -j "$(nproc)")
