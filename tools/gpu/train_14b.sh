#!/usr/bin/env bash
# Does the v6 shape fit one H200? The 14B preset (random weights), NF4 base, bf16, LoRA r=16,
# rows of 8192 tokens, micro-batch 2 (configs/v6.toml's per-rank shape), 3 steps, layer
# checkpointing. Prints time per step, tokens/s and peak memory from metrics.h5.
# Needs build-gpu. Usage: bash tools/gpu/train_14b.sh [PRESET] [SEQ] [MICRO]
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${1:-r1-distill-qwen-14b}
SEQ=${2:-8192}
MICRO=${3:-2}
source tools/gpu/lib.sh /tmp/r1dist-train
long_rows "$W/long8k.jsonl" 16 8
t0=$(date +%s)
preset_model "$PRESET" "$W/$PRESET"
echo "init-model: $(( $(date +%s) - t0 )) s"
rm -rf "$W/run_$PRESET"
mpirun -np 1 $R --cfg configs/v6.toml --set model.path="$W/$PRESET" --set data.path="$W/long8k.jsonl" \
  --set data.n_samples=0 --set data.eval_rows=2 --set data.max_seq_len=$SEQ --set train.micro_batch=$MICRO \
  --set train.grad_accum=1 --set train.steps=3 --set train.warmup_steps=1 --set eval.every_steps=0 \
  --set eval.kl_rows=1 --set output.dir="$W/run_$PRESET" --set output.save_every=0 --set model.device=cuda \
  2>&1 | grep -E "info (model|data |step|eval|done|checkpoint)|error|warning" | tail -n 12
$R metrics "$W/run_$PRESET/metrics.h5" --table steps | tee "$OUT/metrics_$PRESET.tsv"
