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
# Settings may offload too, e.g. 'off:--checkpointing layer --memory-budget 25.7 --offload-layers 24'
# (the table then gives the GB each forward moved and the host link's speed alone, each way).
# MATCH=1 (default, with HF=1): one more r1dist run, "fit", whose --memory-budget is 97% of
# HF's measured peak memory: the trainer's planner (train.memory_budget_gb) picks the kept and
# MLP-recomputing layers from the memory estimate. Settings may use the budget too, e.g.
# 'lean:--checkpointing layer --memory-budget 25.7' (24 GiB).
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
  # The log's name: the setting's name with every character but letters, digits, '.', '_' and
  # '-' as '_' (a name may hold spaces or commas; the log stays one plain file name).
  $R bench train --preset "r1-distill-qwen-$size" --seq "$seq" --micro-batch "$micro" --steps "$STEPS" --device cuda "$@" \
    2> "$OUT/r1dist_${size}_${seq}x${micro}_${name//[^A-Za-z0-9._-]/_}.log" |
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
    [ -n "$hf_gib" ] || continue
    budget=$(python3 -c "print(round($hf_gib * 2**30 / 1e9 * 0.97, 2))")
    r1dist_run "$size" "$seq" "$micro" fit --checkpointing layer --memory-budget "$budget"
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
print("| size | seq x micro | setting | r1dist tok/s | MFU | peak GB | estimate GB | HF tok/s | HF peak GB | ratio | r1dist split: fwd / lm_head+loss / bwd / optim s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
f = lambda v, fmt: "-" if v is None else fmt.format(v)
for (size, seq, micro), name, r in mine:
    h = hf.get((size, seq, micro), {})
    rt, ht = r.get("tokens_per_s"), None if h.get("oom") else h.get("tokens_per_s")
    hgb = h.get("peak_gib") * 2**30 / 1e9 if h.get("peak_gib") else None
    sp = r.get("split_s", {})
    split = " / ".join(f"{sp.get(k, 0):.3f}" for k in ("forward", "lm_head_loss", "backward", "optimizer"))
    plan = f" (keep {r.get('keep_layers')}, MLP {r.get('recompute_mlp_layers')}" if r.get("checkpointing") == "layer" else ""
    if r.get("offload_attention"):
        plan += (", " if plan else " (") + "attention offloaded"
    if r.get("offload_recomputed_inputs"):
        plan += (", " if plan else " (") + "recomputed inputs offloaded"
    if r.get("offload_gb_per_forward"):
        link = r.get("host_link_gbps", {})
        plan += (", " if plan else " (") + (f"offload {r.get('offload_layers', 0)}: {r['offload_gb_per_forward']:.1f} GB per forward, "
                                            f"link {link.get('to_host', 0):.0f}/{link.get('to_device', 0):.0f} GB/s")
    plan += ")" if plan else ""
    label = name + plan
    print(f"| {size} | {seq} x {micro} | {label} | {f(rt, '{:,.0f}')} | {f(r.get('mfu'), '{:.1%}')} | {f(r.get('peak_mem_gb'), '{:.1f}')} | "
          f"{f(r.get('estimate_gb'), '{:.1f}')} | "
          f"{f(ht, '{:,.0f}')}{' (OOM)' if h.get('oom') else ''} | {f(hgb, '{:.1f}')} | "
          f"{f(rt / ht if rt and ht else None, '{:.2f}')} | {split} |")
PY
