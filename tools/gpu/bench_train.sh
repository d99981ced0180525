#!/usr/bin/env bash
# The training speed table (docs/PERFORMANCE.md) on the GPU machine, after a build-gpu build: for each preset in SIZES
# and each shape in SHAPES (seq:micro-batch), HF transformers + PEFT
# (tools/bench/hf_peft_baseline.py: bf16 base, SDPA, gradient checkpointing, fused AdamW; 2
# warm-up + STEPS timed steps) and `r1dist bench train` (random weights in memory, NF4 base,
# bf16, LoRA r=16 alpha=16 on all seven projections, AdamW; 1 warm-up + STEPS timed steps) in
# each of SETTINGS, on the same shape in the same call. HF needs a model directory:
# init-model writes one per preset (INIT_DEVICE, default cuda). Prints the table (tokens/s,
# peak memory, ratio, r1dist's split); JSON lines in $OUT/bench_train.jsonl (appended:
# several calls make one table).
# SETTINGS: r1dist settings, 'name:flags|name:flags' (default 'ckpt:--checkpointing
# layer|none:--checkpointing none').
# MATCH=1 (default, with HF=1 and both default settings): one more r1dist run, "fit", that
# keeps as many layers' activations as fit under HF's measured peak memory (3% margin): the
# per-layer cost is read from the two measured peaks, (none - ckpt) / (layers - 1).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh
SIZES=${SIZES:-"1.5b 7b 14b"}
SHAPES=${SHAPES:-"8192:1 2048:4"}
STEPS=${STEPS:-3}
SETTINGS=${SETTINGS:-"ckpt:--checkpointing layer|none:--checkpointing none"}
HF=${HF:-1}
MATCH=${MATCH:-1}
J=$OUT/bench_train.jsonl

# r1dist_run SIZE SEQ MICRO NAME FLAGS...: one bench train, its JSON line tagged into $J.
r1dist_run() {
  local size=$1 seq=$2 micro=$3 name=$4; shift 4
  $R bench train --preset "r1-distill-qwen-$size" --seq "$seq" --micro-batch "$micro" --steps "$STEPS" --device cuda "$@" \
    2> "$OUT/r1dist_${size}_${seq}x${micro}_$name.log" |
    sed "s/^/{\"size\": \"$size\", \"impl\": \"r1dist\", \"setting\": \"$name\", \"x\": /; s/\$/}/" >> "$J"
  echo "r1dist $size $seq x $micro $name: rc=${PIPESTATUS[0]}"
}

# field SIZE SEQ MICRO SETTING KEY: a number from the last matching line of $J ('' if none).
field() {
  python3 - "$J" "$@" <<'PY'
import json, sys
path, size, seq, micro, setting, key = sys.argv[1:]
v = ""
for line in open(path):
    r = json.loads(line)
    x = r["x"]
    if r["size"] == size and str(x.get("seq")) == seq and str(x.get("micro_batch")) == micro and r["setting"] == setting:
        v = x.get(key, "")
print(v if v is not None else "")
PY
}

for size in $SIZES; do
  preset=r1-distill-qwen-$size
  dir=$W/$preset
  [ "$HF" = 1 ] && preset_model "$preset" "$dir"
  for shape in $SHAPES; do
    seq=${shape%:*}; micro=${shape#*:}
    if [ "$HF" = 1 ]; then
      python3 tools/bench/hf_peft_baseline.py --model "$dir" --seq "$seq" --micro-batch "$micro" --steps "$STEPS" \
        2> "$OUT/hf_${size}_${seq}x$micro.log" |
        sed "s/^/{\"size\": \"$size\", \"impl\": \"hf\", \"setting\": \"hf\", \"x\": /; s/\$/}/" >> "$J"
      echo "hf $size $seq x $micro: done"
    fi
    IFS='|' read -ra settings <<< "$SETTINGS"
    for setting in "${settings[@]}"; do
      # shellcheck disable=SC2086  # the flags split into words on purpose
      r1dist_run "$size" "$seq" "$micro" "${setting%%:*}" ${setting#*:}
    done
    [ "$HF" = 1 ] && [ "$MATCH" = 1 ] || continue
    hf_gib=$(field "$size" "$seq" "$micro" hf peak_gib)
    ckpt_gb=$(field "$size" "$seq" "$micro" ckpt peak_mem_gb)
    none_gb=$(field "$size" "$seq" "$micro" none peak_mem_gb)
    layers=$(python3 -c "import json; print(json.load(open('$dir/config.json'))['num_hidden_layers'])")
    keep=$(python3 -c "
hf, c, n, L = '$hf_gib', '$ckpt_gb', '$none_gb', $layers
if not (hf and c and n): print(-1); raise SystemExit
budget = float(hf) * 2**30 / 1e9 * 0.97
per = (float(n) - float(c)) / (L - 1)
print(max(0, min(L, int((budget - float(c)) / per))) if per > 0 else L)")
    [ "$keep" -ge 0 ] && r1dist_run "$size" "$seq" "$micro" fit --checkpointing layer --keep-layers "$keep"
  done
  rm -rf "$dir"
done
python3 - "$J" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hf, mine = {}, []
for r in rows:
    key = (r["size"], r["x"].get("seq"), r["x"].get("micro_batch"))
    if r["impl"] == "hf":
        hf[key] = r["x"]
    else:
        mine.append((key, r.get("setting", "-"), r["x"]))
print("| size | seq x micro | setting | r1dist tok/s | MFU | peak GB | HF tok/s | HF peak GB | ratio | r1dist split: fwd / lm_head+loss / bwd / optim s |")
print("|---|---|---|---|---|---|---|---|---|---|")
f = lambda v, fmt: "-" if v is None else fmt.format(v)
for (size, seq, micro), name, r in mine:
    h = hf.get((size, seq, micro), {})
    rt, ht = r.get("tokens_per_s"), None if h.get("oom") else h.get("tokens_per_s")
    hgb = h.get("peak_gib") * 2**30 / 1e9 if h.get("peak_gib") else None
    sp = r.get("split_s", {})
    split = " / ".join(f"{sp.get(k, 0):.3f}" for k in ("forward", "lm_head_loss", "backward", "optimizer"))
    label = name + (f" (keep {r.get('keep_layers')})" if name == "fit" else "")
    print(f"| {size} | {seq} x {micro} | {label} | {f(rt, '{:,.0f}')} | {f(r.get('mfu'), '{:.1%}')} | {f(r.get('peak_mem_gb'), '{:.1f}')} | "
          f"{f(ht, '{:,.0f}')}{' (OOM)' if h.get('oom') else ''} | {f(hgb, '{:.1f}')} | "
          f"{f(rt / ht if rt and ht else None, '{:.2f}')} | {split} |")
PY
