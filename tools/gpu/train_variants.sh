#!/usr/bin/env bash
# Trainer variants on ONE GPU (the multi-GPU checks that one GPU allows):
#   - 1.5B preset, bf16, seq 2048, 10 steps: 1 rank (NCCL) against 2 ranks sharing the GPU
#     over the MPI backend with half the accumulation (same global batch), compared with
#     r1dist checkpoint-diff;
#   - the same 1-rank run without layer checkpointing (speed and memory);
#   - the tiny preset in fp32: 1 rank against 2 ranks (MPI), tolerance 1e-5.
# Needs build-gpu. Results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1dist-gpu}
mkdir -p "$OUT"
source launch/env.sh
R=./build-gpu/r1dist
W=${R1DIST_GPU_WORK:-/tmp/r1dist-train}
STEPS=10 TAG=ref bash tools/gpu/train_gpu.sh 1
STEPS=10 TAG=mpi2 BACKEND=mpi bash tools/gpu/train_gpu.sh 2
$R checkpoint-diff "$W/run_np2_mpi2/checkpoints/step_00000010.h5" "$W/run_np1_ref/checkpoints/step_00000010.h5" \
  | tee "$OUT/diff_bf16.txt"
STEPS=10 TAG=nockpt CHECKPOINTING=none bash tools/gpu/train_gpu.sh 1
# tiny fp32 on the GPU
$R init-model --preset tiny --dtype fp32 --seed 1 --out "$W/tiny" --tokenizer .deps/tokenizer-r1 > /dev/null
for np in 1 2; do
  rm -rf "$W/tiny_np$np"
  mpirun -np $np $R --cfg configs/demo/v1.toml --set model.path="$W/tiny" --set model.device=cuda \
    --set dist.backend=mpi --set output.dir="$W/tiny_np$np" --set train.steps=10 \
    --set train.grad_accum=$((4 / np)) > "$OUT/tiny_np$np.log" 2>&1; echo "tiny np$np rc=$?"
done
$R checkpoint-diff "$W/tiny_np2/checkpoints/step_00000010.h5" "$W/tiny_np1/checkpoints/step_00000010.h5" \
  --tol 1e-5 | tee "$OUT/diff_tiny_fp32.txt"
for t in ref mpi2 nockpt; do
  echo "== $t"; grep -E "^(1|5|10)\s" "$OUT/metrics_np"*"_$t.tsv" | head -n 3
done
