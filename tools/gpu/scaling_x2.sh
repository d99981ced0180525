#!/usr/bin/env bash
# On a host with two GPUs after a build-gpu build: weak scaling from one GPU to two
# over NCCL at rows of 8192 tokens (micro-batch 1), NF4 base, bf16, LoRA r=16 on all seven
# projections, layer checkpointing, random weights at the SIZES presets (default 7b). Per size:
#   one   1 GPU,  grad_accum 2 (global batch 2 rows)
#   weak  2 GPUs, grad_accum 2 (global batch 4: each GPU does what `one` does)
#   same  2 GPUs, grad_accum 1 (global batch 2: `one`'s steps split over two GPUs)
# STEPS steps each (the first is warm-up, left out of the means). Prints tokens/s, the
# weak-scaling efficiency (weak / (2 x one)), the all-reduce share of the step (from the
# progress lines), and `r1dist checkpoint-diff` of same against one after the last step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh /tmp/r1dist-scaling
SIZES=${SIZES:-7b}
STEPS=${STEPS:-10}
long_rows "$W/long8k.jsonl" 16 8  # over 8192 tokens each: truncated to it
for size in $SIZES; do
  dir=$W/r1-distill-qwen-$size
  t0=$(date +%s)
  preset_model r1-distill-qwen-$size "$dir"
  echo "init-model $size: $(( $(date +%s) - t0 )) s"
  for spec in "one 1 2" "weak 2 2" "same 2 1"; do
    set -- $spec
    run=$W/run_${size}_$1
    rm -rf "$run"
    t0=$(date +%s)
    mpirun -np "$2" $R --cfg configs/v6.toml --set model.path="$dir" --set data.path="$W/long8k.jsonl" \
      --set data.n_samples=0 --set data.eval_rows=0 --set data.max_seq_len=8192 --set train.micro_batch=1 \
      --set train.grad_accum="$3" --set train.steps="$STEPS" --set train.warmup_steps=1 --set eval.every_steps=0 \
      --set output.save_every=0 --set output.dir="$run" --set model.device=cuda > "$OUT/train_${size}_$1.log" 2>&1
    echo "$size $1 (np $2, accum $3): rc=$? in $(( $(date +%s) - t0 )) s"
    grep -E "error|HINT" "$OUT/train_${size}_$1.log" | head -n 5
    $R metrics "$run/metrics.h5" --table steps > "$OUT/metrics_${size}_$1.tsv"
  done
  $R checkpoint-diff "$W/run_${size}_same/checkpoints/step_$(printf %08d "$STEPS").h5" \
    "$W/run_${size}_one/checkpoints/step_$(printf %08d "$STEPS").h5" 2>&1 | tail -n 4 | tee "$OUT/diff_$size.txt"
done
python3 - "$OUT" $SIZES <<'PY'
import csv, re, sys
out, sizes = sys.argv[1], sys.argv[2:]
def stats(size, name):
    rows = list(csv.DictReader(open(f"{out}/metrics_{size}_{name}.tsv"), delimiter="\t"))[1:]
    real = sum(float(r["real_tokens"]) for r in rows)
    secs = sum(float(r["step_time_s"]) for r in rows)
    log = open(f"{out}/train_{size}_{name}.log").read()
    comm = [float(pct) for _, pct in re.findall(r"step (\d+)/\d+ .*? ([\d.]+)% comm", log)][1:]
    return real / secs, max(float(r["mem_gb"]) for r in rows), sum(comm) / max(len(comm), 1), secs / len(rows)
print("| size | 1 GPU tok/s | 2 GPUs tok/s (weak) | efficiency | all-reduce share (2 GPUs) | step s (1 / 2 GPUs) | peak GB |")
print("|---|---|---|---|---|---|---|")
for s in sizes:
    o, w = stats(s, "one"), stats(s, "weak")
    print(f"| {s} | {o[0]:,.0f} | {w[0]:,.0f} | {w[0] / (2 * o[0]):.1%} | {w[2]:.2f}% | {o[3]:.2f} / {w[3]:.2f} | {w[1]:.1f} |")
PY
