#!/usr/bin/env bash
# The packing benchmark (docs/PERFORMANCE.md) on the GPU machine, in one call after a build-gpu build: real rows
# (ROWS, default .deps/bench/medical_500.jsonl: tools/bench/repeat_rows.py over
# the medical-o1 sample rows), the v6 recipe on one GPU (NF4 base, bf16, LoRA r=16 on all seven
# projections, max_seq_len 8192, global batch 64 = micro-batch 2 x grad_accum 32, layer
# checkpointing), random weights at the SIZES presets. Per size:
#   r1dist, data.packing = true
#   r1dist, padded per micro-batch (data.packing = false) with data.group_by_length = true
#   HF transformers + PEFT (tools/bench/hf_peft_baseline.py), bf16 base, dynamic padding
#   (micro-batch 2, shuffled), on the same tokenized rows (exported by an r1dist dry run)
# SETS: more `--set key=value` for both r1dist runs (e.g. "--set train.keep_layers=32").
# STEPS steps each (r1dist: the first is warm-up and left out of the mean; HF: 1 warm-up +
# STEPS-1 timed; HF=0 leaves HF out). Prints the table of real tokens/s and the ratios; files
# in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh
ROWS=${ROWS:-.deps/bench/medical_500.jsonl}
SIZES=${SIZES:-"7b 14b"}
STEPS=${STEPS:-4}
INIT_DEVICE=cpu preset_model tiny "$W/tiny"
common=(--cfg configs/v6.toml --set data.path="$ROWS" --set data.n_samples=0 --set data.eval_rows=0
        --set train.grad_accum=32 --set train.steps="$STEPS" --set train.warmup_steps=1 --set eval.every_steps=0
        --set output.save_every=0 --set model.device=cuda)
# The rows every trainer sees: the tokenizer is the same for every preset.
$R "${common[@]}" --set model.path="$W/tiny" --set output.dir="$W/dry" --dry-run --export-rows "$W/rows.jsonl" \
  2>&1 | grep -E "info (data |step 1)|exported|error" | tee "$OUT/rows.log"
for size in $SIZES; do
  dir=$W/r1-distill-qwen-$size
  t0=$(date +%s)
  preset_model r1-distill-qwen-$size "$dir"
  echo "init-model $size: $(( $(date +%s) - t0 )) s"
  for mode in packed grouped; do
    extra=(--set data.packing=true)
    [ "$mode" = grouped ] && extra=(--set data.packing=false --set data.group_by_length=true)
    run=$W/run_${size}_$mode
    rm -rf "$run"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    mpirun -np 1 $R "${common[@]}" "${extra[@]}" ${SETS:-} --set model.path="$dir" --set output.dir="$run" \
      > "$OUT/train_${size}_$mode.log" 2>&1
    echo "r1dist $size $mode: rc=$? in $(( $(date +%s) - t0 )) s"
    grep -E "error|HINT" "$OUT/train_${size}_$mode.log" | head -n 5
    $R metrics "$run/metrics.h5" --table steps > "$OUT/metrics_${size}_$mode.tsv"
  done
  [ "${HF:-1}" = 1 ] || continue
  t0=$(date +%s)
  python3 tools/bench/hf_peft_baseline.py --model "$dir" --rows "$W/rows.jsonl" --global-batch 64 --micro-batch 2 \
    --warmup 1 --steps $(( STEPS - 1 )) 2> "$OUT/hf_${size}.log" | sed "s/^/{\"size\": \"$size\", \"x\": /; s/\$/}/" \
    >> "$OUT/hf_rows.jsonl"
  echo "hf $size: $(( $(date +%s) - t0 )) s"; tail -n 2 "$OUT/hf_${size}.log"
done
python3 - "$OUT" $SIZES <<'PY'
import csv, json, os, sys
out, sizes = sys.argv[1], sys.argv[2:]
hf = {}
for line in open(f"{out}/hf_rows.jsonl") if os.path.exists(f"{out}/hf_rows.jsonl") else []:
    r = json.loads(line)
    hf[r["size"]] = r["x"]
def r1(size, mode):
    rows = list(csv.DictReader(open(f"{out}/metrics_{size}_{mode}.tsv"), delimiter="\t"))[1:]  # step 1: warm-up
    if not rows:
        return None
    real = sum(float(r["real_tokens"]) for r in rows)
    secs = sum(float(r["step_time_s"]) for r in rows)
    return {"tps": real / secs, "pad": sum(float(r["padding_share"]) for r in rows) / len(rows),
            "mem": max(float(r["mem_gb"]) for r in rows), "steps": len(rows)}
print("| size | r1dist packed tok/s | peak GB | r1dist padded+grouped tok/s | pad | peak GB | HF+PEFT tok/s | pad | peak GiB | packed/HF | packed/padded |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in sizes:
    p, g, h = r1(s, "packed"), r1(s, "grouped"), hf.get(s, {})
    ht = h.get("tokens_per_s")
    cell = lambda x, f="{:,.0f}": "-" if x is None else f.format(x)
    print(f"| {s} | {cell(p and p['tps'])} | {cell(p and p['mem'], '{:.1f}')} | {cell(g and g['tps'])} | "
          f"{cell(g and g['pad'], '{:.1%}')} | {cell(g and g['mem'], '{:.1f}')} | {cell(ht)}{' (OOM)' if h.get('oom') else ''} | "
          f"{cell(h.get('padding_share'), '{:.1%}')} | {cell(h.get('peak_gib'), '{:.1f}')} | "
          f"{cell(p and ht and p['tps'] / ht, '{:.2f}')} | {cell(p and g and p['tps'] / g['tps'], '{:.2f}')} |")
PY
