#!/usr/bin/env bash
# The whole `r1dist train --cfg CONFIG` command as a user waits for it, on one GPU after a
# build-gpu build: the recipe's preset with random weights (written first, not timed), ROWS
# real rows (default .deps/bench/medical_550.jsonl: tools/bench/repeat_rows.py over the
# medical-o1 sample rows, 500 training + 50 held out), train.grad_accum GRAD_ACCUM so the
# recipe's global batch holds on one rank. Prints the wall time, the log's time split and the
# step lines; SETS adds `--set key=value` pairs (e.g. "--set data.packing=false").
# Usage: bash tools/gpu/time_recipe.sh CONFIG PRESET GRAD_ACCUM
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh /tmp/r1dist-bench
CFG=$1 PRESET=$2 ACCUM=$3
ROWS=${ROWS:-.deps/bench/medical_550.jsonl}
name=$(basename "$CFG" .toml)${TAG:+_$TAG}
dir=$W/$PRESET
t0=$(date +%s)
preset_model "$PRESET" "$dir"
echo "init-model $PRESET: $(( $(date +%s) - t0 )) s"
rm -rf "$W/run_$name"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
mpirun -np 1 $R train --cfg "$CFG" --set model.path="$dir" --set data.path="$ROWS" --set train.grad_accum="$ACCUM" \
  --set output.dir="$W/run_$name" --set model.device=cuda ${SETS:-} > "$OUT/recipe_$name.log" 2>&1
rc=$?
t1=$(date +%s.%N)
echo "== $name ($PRESET, grad_accum $ACCUM ${SETS:-}): rc=$rc, whole command $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
grep -E "info (model |memory|packing|train.checkpointing|eval at|checkpoint |time|final)|error|warn" "$OUT/recipe_$name.log" |
  cut -c1-220 | head -n 40
grep -A 12 -E "time split" "$OUT/recipe_$name.log" | head -n 14
$R metrics "$W/run_$name/metrics.h5" --table steps > "$OUT/recipe_${name}_steps.tsv" 2>/dev/null
head -n 4 "$OUT/recipe_${name}_steps.tsv"; tail -n 2 "$OUT/recipe_${name}_steps.tsv"
