#!/usr/bin/env bash
# The main job on the embedded default, from a fresh Debian 12 clone: install, build, write
# the tiny model (the R1-distill tokenizer copied in), then train it with QLoRA on the
# bundled synthetic Chinese sample on 2 MPI ranks (configs/demo.toml): progress on rank 0,
# HDF5 checkpoints and metrics in runs/demo. Then print the metrics and the checkpoint layout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
source launch/env.sh
bash tools/build.sh
mkdir -p runs/demo
[ -f runs/demo/model/tokenizer.json ] ||
  ./build/r1dist init-model --preset tiny --dtype fp32 --seed 3407 --out runs/demo/model --tokenizer .deps/tokenizer-r1
# A fresh run each time (the model and the tokenized-data cache stay).
rm -rf runs/demo/checkpoints runs/demo/metrics.h5 runs/demo/adapter runs/demo/run*.log runs/demo/run.json
mpirun -np 2 ./build/r1dist --cfg configs/demo.toml
./build/r1dist metrics runs/demo/metrics.h5 --table evals
h5dump -H runs/demo/checkpoints/step_00000020.h5 > runs/demo/checkpoint_layout.txt
h5ls -r runs/demo/checkpoints/step_00000020.h5 > runs/demo/checkpoint_ls.txt
head -n 6 runs/demo/checkpoint_ls.txt; echo "  ... ($(wc -l < runs/demo/checkpoint_ls.txt) objects; h5dump -H in runs/demo/checkpoint_layout.txt)"
echo "demo: checkpoints in runs/demo/checkpoints, metrics in runs/demo/metrics.h5, PEFT adapter in runs/demo/adapter"
