#!/usr/bin/env bash
# The trainer on the GPU machine: a 1.5B-preset model with random weights
# (bf16, NF4 base, LoRA r=16 on all seven projections), rows of 2048 tokens, 20 steps on the
# NCCL backend, a checkpoint that h5dump reads, and the per-step figures from metrics.h5.
# Needs a build in build-gpu (tools/gpu/build_and_test.sh) and the staged .deps/h5tools.
# Usage: bash tools/gpu/train_gpu.sh [NP]   (NP ranks, one per GPU; default 1)
# Environment: STEPS (20), ACCUM (8/NP: global batch 32 rows), BACKEND (nccl; mpi lets
# several ranks share one GPU), CHECKPOINTING (layer|none), TAG (run name suffix).
set -euo pipefail
cd "$(dirname "$0")/../.."
NP=${1:-1}
STEPS=${STEPS:-20}
ACCUM=${ACCUM:-$((8 / NP))}
BACKEND=${BACKEND:-nccl}
CHECKPOINTING=${CHECKPOINTING:-layer}
TAG=np$NP${TAG:+_$TAG}
source tools/gpu/lib.sh /tmp/r1dist-train
long_rows "$W/long.jsonl" 64 2  # rows of at least 2048 tokens
preset_model r1-distill-qwen-1.5b "$W/m15"
cat > "$W/gpu15_$TAG.toml" <<TOML
[model]
path = "$W/m15"
dtype = "bf16"
device = "cuda"
[lora]
r = 16
alpha = 16
[data]
path = "$W/long.jsonl"
max_seq_len = 2048
overlong = "truncate"
eval_rows = 4
[train]
steps = $STEPS
micro_batch = 4
grad_accum = $ACCUM
checkpointing = "$CHECKPOINTING"
lr = 2e-4
warmup_steps = 2
[eval]
every_steps = 10
kl_rows = 2
[dist]
backend = "$BACKEND"
[output]
dir = "$W/run_$TAG"
save_every = 10
TOML
rm -rf "$W/run_$TAG"
mpirun -np "$NP" $R --cfg "$W/gpu15_$TAG.toml" 2>&1 | tee "$OUT/train_$TAG.log" | grep -E "info (model|step|eval|done)|error" | tail -n 8
$R metrics "$W/run_$TAG/metrics.h5" > "$OUT/metrics_$TAG.tsv" 2>&1 || true
H5=.deps/h5tools/usr
CK=$(printf "%s/run_%s/checkpoints/step_%08d.h5" "$W" "$TAG" "$STEPS")
LD_LIBRARY_PATH=$H5/lib/x86_64-linux-gnu $H5/bin/h5dump -H "$CK" > "$W/h5dump_$TAG.txt" 2>&1
echo "h5dump -H $CK: rc=$?, $(wc -l < "$W/h5dump_$TAG.txt") lines"
