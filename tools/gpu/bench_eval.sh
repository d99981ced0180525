#!/usr/bin/env bash
# Decode and evaluation speed figures on the GPU machine, in one call after tools/gpu/build_and_test.sh:
#   1. decode tokens/s, r1dist `bench generate` (base weights bf16 and NF4: QUANTS; CUDA graphs on and
#      off: GRAPHS; the few-row GEMV kernel on and off: GEMV, R1DIST_GEMV) and HF transformers `generate`
#      (tools/bench/hf_generate.py) on the same preset model directories (random bf16
#      weights, R1 tokenizer): 1.5B and 7B, batch 1 and 16, 128-token prompt, 256 new tokens;
#   2. `r1dist eval` of 50 held-out rows on the 14B preset (NF4 base, bf16), with the
#      default prompts' generations, each stage timed in the log.
# Results in $OUT (bench_generate.jsonl, eval_14b.log). Needs the carried .deps/tokenizer-r1.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh
SIZES=${SIZES-"1.5b 7b"}  # SIZES="" skips the decode figures
for size in $SIZES; do
  dir=$W/r1-distill-qwen-$size
  preset_model r1-distill-qwen-$size "$dir"
  for quant in ${QUANTS:-none nf4}; do
    for graphs in ${GRAPHS:-on off}; do
      for gemv in ${GEMV:-1 0}; do
        R1DIST_GEMV=$gemv $R bench generate --model "$dir" --quant "$quant" --batch "${BATCH:-1,16}" --reps 3 --graphs "$graphs" \
          2>> "$OUT/bench_generate.log" | tee -a "$OUT/bench_generate.jsonl"
      done
    done
  done
  python3 tools/bench/hf_generate.py --model "$dir" --batch "${BATCH:-1,16}" --reps 3 2>> "$OUT/bench_generate.log" |
    tee -a "$OUT/bench_generate.jsonl"
  [ "$size" = 7b ] || rm -rf "$dir"
done
if [ "${EVAL_14B:-1}" = 1 ]; then
  dir=$W/r1-distill-qwen-14b
  preset_model r1-distill-qwen-14b "$dir"
  /usr/bin/time -v $R eval --model "$dir" --data data/sample_zh.jsonl --rows 50 --quant nf4 --dtype bf16 \
    --out "$OUT/eval_14b.h5" > "$OUT/eval_14b.txt" 2> "$OUT/eval_14b.log"
  echo "eval 14b rc=$?"; grep -E "eval:|model " "$OUT/eval_14b.log"; cat "$OUT/eval_14b.txt"
  grep -E "Elapsed|Maximum resident" "$OUT/eval_14b.log"
fi
