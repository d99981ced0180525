#!/usr/bin/env bash
# Scaling figures on the GPU machine, after a build-gpu build (docs/PERFORMANCE.md, "Scaling"):
# for each preset in SIZES (default 7b 14b), `r1dist bench allreduce` (the preset's LoRA
# gradient buffer, r=16, all seven projections, through NCCL) and `r1dist bench train` at the
# v6 per-rank shape with one row per micro-batch (8192 tokens x micro-batch 1, NF4 base, bf16,
# layer checkpointing, the kept layers chosen by --memory-budget BUDGET GB, default 50.6 as
# docs/PERFORMANCE.md uses), first on one GPU, then on every GPU of the machine (mpirun -np
# GPUS, one rank per GPU; skipped on one GPU) with the one-GPU line as the baseline. Prints
# each run's projection to 8, 16, 64 and 256 GPUs (BUSBW GB/s and LATENCY_US when set, else
# bench train's rule) and writes, per preset, $OUT/scaling_SIZE/ (the JSON lines, logs and
# `r1dist report --scaling`: scaling.md, scaling.html, scaling.png).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh /tmp/r1dist-scaling
SIZES=${SIZES:-"7b 14b"}
STEPS=${STEPS:-3}
BUDGET=${BUDGET:-50.6}
REPS=${REPS:-20}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
[ "$GPUS" -ge 1 ] || { echo "bench_scaling: no GPU (nvidia-smi -L lists none)" >&2; exit 1; }
proj=()
[ -n "${BUSBW:-}" ] && proj+=(--busbw "$BUSBW")
[ -n "${LATENCY_US:-}" ] && proj+=(--latency-us "$LATENCY_US")
echo "bench_scaling: $GPUS GPU(s); sizes $SIZES; 8192 x 1, layer checkpointing, --memory-budget $BUDGET"
for size in $SIZES; do
  d=$OUT/scaling_$size
  mkdir -p "$d"
  for n in 1 $([ "$GPUS" -gt 1 ] && echo "$GPUS"); do
    launch=()
    [ "$n" -gt 1 ] && launch=(mpirun -np "$n")
    base=()
    [ "$n" -gt 1 ] && base=(--baseline "$d/train_1.jsonl")
    "${launch[@]+"${launch[@]}"}" $R bench allreduce --preset "r1-distill-qwen-$size" --reps "$REPS" --warmup 5 \
      --device cuda > "$d/allreduce_$n.jsonl" 2> "$d/allreduce_$n.log"
    echo "allreduce $size at $n GPU(s): rc=$? $(cat "$d/allreduce_$n.jsonl")"
    "${launch[@]+"${launch[@]}"}" $R bench train --preset "r1-distill-qwen-$size" --seq 8192 --micro-batch 1 \
      --checkpointing layer --memory-budget "$BUDGET" --steps "$STEPS" --device cuda "${proj[@]+"${proj[@]}"}" \
      "${base[@]+"${base[@]}"}" > "$d/train_$n.jsonl" 2> "$d/train_$n.log"
    echo "train $size at $n GPU(s): rc=$?"
    cat "$d/train_$n.jsonl"
    sed -n '/^projection (/,$p' "$d/train_$n.log"
    grep -E "error|HINT" "$d/train_$n.log" | head -n 5
  done
  $R report --scaling "$d" --title "r1dist scaling, r1-distill-qwen-$size" > /dev/null 2> "$d/report.log" &&
    echo "report: $d/scaling.md" && cat "$d/scaling.md"
done
