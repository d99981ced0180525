#!/usr/bin/env bash
# Issue 15's speed table on the GPU machine, after a build-gpu build: for each preset in SIZES
# and each shape in SHAPES (seq:micro-batch), `r1dist bench train` (random weights in memory,
# NF4 base, bf16, LoRA r=16 alpha=16 on all seven projections, layer checkpointing, AdamW; 1
# warm-up + STEPS timed steps) and HF transformers + PEFT (tools/bench/hf_peft_baseline.py,
# bf16 base, SDPA, gradient checkpointing, fused AdamW; 2 warm-up + STEPS timed) on the same
# shape in the same call. HF needs a model directory: init-model writes one per preset
# (INIT_DEVICE, default cuda). Prints the table (tokens/s, peak memory, ratio, r1dist's
# split); JSON lines in $OUT/bench_train.jsonl.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh
SIZES=${SIZES:-"1.5b 7b 14b"}
SHAPES=${SHAPES:-"8192:1 2048:4"}
STEPS=${STEPS:-3}
for size in $SIZES; do
  preset=r1-distill-qwen-$size
  for shape in $SHAPES; do
    seq=${shape%:*}; micro=${shape#*:}
    $R bench train --preset "$preset" --seq "$seq" --micro-batch "$micro" --steps "$STEPS" --device cuda \
      2> "$OUT/r1dist_${size}_${seq}x$micro.log" | sed "s/^/{\"size\": \"$size\", \"impl\": \"r1dist\", \"x\": /; s/\$/}/" \
      >> "$OUT/bench_train.jsonl"
    echo "r1dist $size $seq x $micro: rc=${PIPESTATUS[0]}"
  done
  dir=$W/$preset
  [ "${HF:-1}" = 1 ] || continue
  preset_model "$preset" "$dir"
  for shape in $SHAPES; do
    seq=${shape%:*}; micro=${shape#*:}
    python3 tools/bench/hf_peft_baseline.py --model "$dir" --seq "$seq" --micro-batch "$micro" --steps "$STEPS" \
      2> "$OUT/hf_${size}_${seq}x$micro.log" | sed "s/^/{\"size\": \"$size\", \"impl\": \"hf\", \"x\": /; s/\$/}/" \
      >> "$OUT/bench_train.jsonl"
    echo "hf $size $seq x $micro: done"
  done
  rm -rf "$dir"
done
python3 - "$OUT/bench_train.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cells = {}
for r in rows:
    x = r["x"]
    cells.setdefault((r["size"], x.get("seq"), x.get("micro_batch")), {})[r["impl"]] = x
print("| size | seq x micro | r1dist tok/s | MFU | peak GB | HF tok/s | HF peak GiB | ratio | r1dist split: fwd / lm_head+loss / bwd / optim s |")
print("|---|---|---|---|---|---|---|---|---|")
for (size, seq, micro), c in cells.items():
    r, h = c.get("r1dist", {}), c.get("hf", {})
    rt, ht = r.get("tokens_per_s"), None if h.get("oom") else h.get("tokens_per_s")
    sp = r.get("split_s", {})
    split = " / ".join(f"{sp.get(k, 0):.3f}" for k in ("forward", "lm_head_loss", "backward", "optimizer"))
    f = lambda v, fmt: "-" if v is None else fmt.format(v)
    print(f"| {size} | {seq} x {micro} | {f(rt, '{:,.0f}')} | {f(r.get('mfu'), '{:.1%}')} | {f(r.get('peak_mem_gb'), '{:.1f}')} | "
          f"{f(ht, '{:,.0f}')}{' (OOM)' if h.get('oom') else ''} | {f(h.get('peak_gib'), '{:.1f}')} | "
          f"{f(rt / ht if rt and ht else None, '{:.2f}')} | {split} |")
PY
