#!/usr/bin/env bash
# One GPU-machine session's worth of work, batched: (optionally) regenerate the reference
# fixtures that need transformers/PEFT, build against CUDA libtorch, run the suite, run the
# benchmarks, compare the tokenizer with HF `tokenizers`. Everything worth keeping lands in
# $OUT. Stage first, here: bash tools/gpu/stage-deps.sh; bash tools/reference/prepare_hf_parity.sh
# Call with carry [".deps/toml", ".deps/sys", ".deps/hf-parity"].
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1dist-gpu}
mkdir -p "$OUT"
source launch/env.sh
export PYTHONUNBUFFERED=1
if [ "${R1DIST_FIXTURES:-0}" = 1 ]; then
  python3 tools/reference/make_nf4_fixture.py --out tests/fixtures/nf4 2>&1 | tail -n 12
  python3 tools/reference/make_peft_fixture.py --base tests/fixtures/qwen2_a --out tests/fixtures/peft_a 2>&1 | grep -v Warning | tail -n 4
  tar czf "$OUT/fixtures.tgz" tests/fixtures/nf4 tests/fixtures/peft_a
fi
if [ -d .deps/hf-parity/tokenizer ] && [ ! -d .deps/tokenizer-r1 ]; then
  mkdir -p .deps/tokenizer-r1 && cp .deps/hf-parity/tokenizer/* .deps/tokenizer-r1/
fi
bash tools/gpu/build_and_test.sh
./build-gpu/r1dist bench nf4 --preset r1-distill-qwen-14b 2>&1 | tee "$OUT/bench_nf4.txt"
if [ -d .deps/hf-parity ]; then
  (cd .deps/hf-parity && python3 hf_tokenizers_parity.py --tokenizer tokenizer --corpus corpus.jsonl \
     --ids r1dist_ids.jsonl --decoded r1dist_decoded.jsonl --out "$OUT/hf_ids.jsonl" --repeat 3; echo "hf_rc=$?") 2>&1 | tee "$OUT/tokenizer_hf.txt"
  ./build-gpu/r1dist_bench_tokenizer --tokenizer .deps/hf-parity/tokenizer --corpus .deps/hf-parity/corpus.jsonl \
     --no-js --repeat 3 2>&1 | tee -a "$OUT/tokenizer_hf.txt"
fi
