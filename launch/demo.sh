#!/usr/bin/env bash
# The main job on the embedded default, from a fresh Debian 12 clone: install, build, write
# three tiny random models standing in for the 1.5B, 7B and 14B (the R1-distill tokenizer
# copied in), then run the seed experiment's eight versions at demo size (configs/demo:
# QLoRA on the bundled synthetic Chinese sample, 2 MPI ranks each) through the same
# per-version script the Slurm sweep uses (cluster/slurm/run_version.sh), and end with the
# report of all of them (runs/demo/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
source launch/env.sh
bash tools/build.sh
export R1DIST_CONFIGS=configs/demo R1DIST_NP=${R1DIST_NP:-2}
mkdir -p runs/demo/models
seed=3407
for size in 1.5B 7B 14B; do
  dir=runs/demo/models/DeepSeek-R1-Distill-Qwen-$size
  [ -f "$dir/tokenizer.json" ] ||
    ./build/r1dist init-model --preset tiny --dtype fp32 --seed $seed --out "$dir" --tokenizer .deps/tokenizer-r1
  seed=$((seed + 1))
done
# A fresh sweep each time (the models and the tokenized-data caches stay).
for v in v1 v2 v3 v4 v5 v6 v7 v8; do
  rm -rf "runs/demo/$v/checkpoints" "runs/demo/$v/metrics.h5" "runs/demo/$v/adapter" "runs/demo/$v"/run*.log \
    "runs/demo/$v/run.json"
done
for v in v1 v5 v6 v7 v8 v2 v3 v4; do
  bash cluster/slurm/run_version.sh "$v"
done
bash cluster/slurm/report.sh
echo "demo: eight versions in runs/demo/v1..v8 (checkpoints, metrics.h5 with /eval, PEFT adapter); report in runs/demo/report.md, report.html and the PNG plots"
