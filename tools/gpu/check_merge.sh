#!/usr/bin/env bash
# On the GPU machine (after a build into build-gpu): `r1dist merge` of the HF
# PEFT fixture adapter (tests/fixtures/peft_a on qwen2_a) as fp32, bf16 and bf16 sharded
# (index + several files), each loaded by transformers' from_pretrained and compared with
# PEFT's merge_and_unload (tools/reference/check_merge_in_transformers.py). Results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1dist-gpu}
mkdir -p "$OUT"
source launch/env.sh
R=./build-gpu/r1dist
W=$(mktemp -d)
$R merge --model tests/fixtures/qwen2_a --adapter tests/fixtures/peft_a --out "$W/fp32" --out-dtype fp32
$R merge --model tests/fixtures/qwen2_a --adapter tests/fixtures/peft_a --out "$W/bf16"
$R merge --model tests/fixtures/qwen2_a --adapter tests/fixtures/peft_a --out "$W/bf16_sharded" --max-shard-gb 0.0002
ls -l "$W"/* > "$OUT/merge_dirs.txt"
python3 tools/reference/check_merge_in_transformers.py --base tests/fixtures/qwen2_a --adapter tests/fixtures/peft_a \
  --merged "$W/fp32" --tol 1e-5 | tee "$OUT/merge_check.jsonl"
python3 tools/reference/check_merge_in_transformers.py --base tests/fixtures/qwen2_a --adapter tests/fixtures/peft_a \
  --merged "$W/bf16" "$W/bf16_sharded" --tol 1e-3 | tee -a "$OUT/merge_check.jsonl"
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -n 1 | tee "$OUT/vllm.txt"
