#!/usr/bin/env bash
# Where a training step's GPU time goes, on the GPU machine after a build-gpu build: traces
# step 2 (Kineto, R1DIST_PROFILE_STEP) of the v6 recipe on real rows (ROWS, as
# tools/gpu/bench_packing.sh) at the SIZE preset (default 7b), for each of MODES (packed:
# data.packing = true; grouped: padded, data.packing = false and data.group_by_length = true), and prints
# tools/gpu/trace_summary.py's table for each. Traces and summaries in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh
ROWS=${ROWS:-.deps/bench/medical_500.jsonl}
SIZE=${SIZE:-7b}
dir=$W/r1-distill-qwen-$SIZE
preset_model r1-distill-qwen-$SIZE "$dir"
for mode in ${MODES:-packed grouped}; do
  extra=(--set data.packing=true)
  [ "$mode" = grouped ] && extra=(--set data.packing=false --set data.group_by_length=true)
  run=$W/profile_${SIZE}_$mode
  rm -rf "$run"
  R1DIST_PROFILE_STEP=2 R1DIST_PROFILE_OUT="$W/trace_${SIZE}_$mode.json" mpirun -np 1 \
    -x R1DIST_PROFILE_STEP -x R1DIST_PROFILE_OUT $R --cfg configs/v6.toml "${extra[@]}" \
    --set model.path="$dir" --set data.path="$ROWS" --set data.n_samples=0 --set data.eval_rows=0 \
    --set train.grad_accum=32 --set train.steps=2 --set train.warmup_steps=1 --set eval.every_steps=0 \
    --set output.save_every=0 --set output.dir="$run" --set model.device=cuda > "$OUT/profile_${SIZE}_$mode.log" 2>&1
  echo "== $SIZE $mode: rc=$?"
  grep -E "info step|error" "$OUT/profile_${SIZE}_$mode.log" | cut -c1-160
  python3 tools/gpu/trace_summary.py "$W/trace_${SIZE}_$mode.json" --top 20 | tee "$OUT/trace_${SIZE}_$mode.txt"
done
