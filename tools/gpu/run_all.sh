#!/usr/bin/env bash
# One GPU-machine session's worth of work, batched: regenerate the reference fixtures that
# need transformers/PEFT, build against CUDA libtorch, run the suite, run the benchmarks.
# Everything worth keeping lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1dist-gpu}
mkdir -p "$OUT"
source launch/env.sh
export PYTHONUNBUFFERED=1
if [ "${R1DIST_FIXTURES:-1}" = 1 ]; then
  python3 tools/reference/make_nf4_fixture.py --out tests/fixtures/nf4 2>&1 | tail -n 12
  python3 tools/reference/make_peft_fixture.py --base tests/fixtures/qwen2_a --out tests/fixtures/peft_a 2>&1 | grep -v Warning | tail -n 4
  tar czf "$OUT/fixtures.tgz" tests/fixtures/nf4 tests/fixtures/peft_a
fi
bash tools/gpu/build_and_test.sh
./build-gpu/r1dist bench nf4 --preset r1-distill-qwen-14b 2>&1 | tee "$OUT/bench_nf4.txt"
