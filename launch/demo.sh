#!/usr/bin/env bash
# The main job on the embedded default, from a fresh Debian 12 clone: install, build, write
# three tiny random models standing in for the 1.5B, 7B and 14B (the R1-distill tokenizer
# copied in), then run the seed experiment at demo size as a sweep (configs/demo/seed.sweep.toml:
# the five fine-tunes of configs/demo, QLoRA on the bundled synthetic Chinese sample, 2 MPI
# ranks each, and the three derived base evaluations) through the same per-point script the
# Slurm jobs use (cluster/slurm/submit.sh --local), and end with the report of all of them
# (runs/demo/report.md, report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
source launch/env.sh
bash tools/build.sh
export R1DIST_NP=${R1DIST_NP:-2}
mkdir -p runs/demo/models
seed=3407
for size in 1.5B 7B 14B; do
  dir=runs/demo/models/DeepSeek-R1-Distill-Qwen-$size
  [ -f "$dir/tokenizer.json" ] ||
    ./build/r1dist init-model --preset tiny --dtype fp32 --seed $seed --out "$dir" --tokenizer .deps/tokenizer-r1
  seed=$((seed + 1))
done
# A fresh sweep each time (the models and the tokenized-data caches stay).
if [ -f runs/demo/points.tsv ]; then
  while IFS=$'\t' read -r index kind name config out; do
    case $index in '#'*) continue ;; esac
    rm -rf "$out/checkpoints" "$out/metrics.h5" "$out/adapter" "$out"/run*.log "$out/run.json" "$out"/attempts.*
  done < runs/demo/points.tsv
fi
bash cluster/slurm/submit.sh --sweep configs/demo/seed.sweep.toml --local
echo "demo: the sweep in runs/demo (one directory per point: checkpoints, metrics.h5 with /eval, PEFT adapter;" \
  "r1dist sweep status runs/demo); report in runs/demo/report.md, report.html and the PNG plots"
