#!/usr/bin/env bash
# The main job on the embedded default, from a fresh Debian 12 clone: install, build, write
# the tiny model, then run configs/demo.toml on 2 MPI ranks, score sample sequences and
# tokenize the standard test prompt with the R1 tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
source launch/env.sh
bash tools/build.sh
mkdir -p runs/demo
[ -f runs/demo/model/config.json ] || ./build/r1dist init-model --preset tiny --out runs/demo/model --seed 3407
mpirun -np 2 ./build/r1dist --cfg configs/demo.toml --dry-run
mpirun -np 2 ./build/r1dist score --model runs/demo/model --ids configs/demo_ids.json --no-logprobs
# The R1-distill tokenizer (written by install-deps): the standard test prompt as the
# model sees it, and back.
./build/r1dist tokenize --tokenizer .deps/tokenizer-r1 --add-special --json \
  --text '<｜User｜>28岁程序员，常年熬夜，头晕目眩，恶心<｜Assistant｜>' | tee runs/demo/prompt_ids.json
./build/r1dist tokenize --tokenizer .deps/tokenizer-r1 --decode --file runs/demo/prompt_ids.json; echo
