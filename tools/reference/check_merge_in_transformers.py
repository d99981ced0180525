#!/usr/bin/env python3
"""Does `r1dist merge` output load in HF transformers with PEFT's own merge's logits?

For each merged directory given (written by `r1dist merge`, fp32 or bf16, single file or
sharded with an index) this loads it with AutoModelForCausalLM.from_pretrained (as a user
would) and compares its fp32 CPU logits with those of PEFT's merge_and_unload of the same
base and adapter, the PEFT weights rounded to the merged directory's dtype first (so a bf16
directory is judged against bf16-rounded PEFT weights, not against fp32). Prints one JSON
line per directory; exits 1 when a max relative error exceeds --tol.
    python3 tools/reference/check_merge_in_transformers.py --base tests/fixtures/qwen2_a \
        --adapter tests/fixtures/peft_a --merged /tmp/m_fp32 /tmp/m_bf16
"""
import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged", nargs="+", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager")
    peft_merged = PeftModel.from_pretrained(base, args.adapter).merge_and_unload()
    vocab = peft_merged.config.vocab_size
    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(3))
    failed = False
    for d in args.merged:
        files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
        mine = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        with open(os.path.join(d, "config.json")) as f:
            conf = json.load(f)
        stored = conf.get("dtype", conf.get("torch_dtype"))
        first = next(iter(mine.state_dict().values()))
        # The dtype the weights were written in: read it back from the first safetensors header.
        with open(os.path.join(d, files[0]), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        written = next(v["dtype"] for k, v in header.items() if k != "__metadata__")
        ref = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager"),
            args.adapter).merge_and_unload()
        if written == "BF16":
            with torch.no_grad():
                for p in ref.parameters():
                    p.copy_(p.to(torch.bfloat16).float())
        a, b = logits_of(mine, ids), logits_of(ref, ids)
        rel = ((a - b).abs().max() / b.abs().max()).item()
        wdiff = max((p1 - p2).abs().max().item() for p1, p2 in zip(mine.state_dict().values(), ref.state_dict().values()))
        ok = rel <= args.tol
        failed |= not ok
        print(json.dumps({"merged": d, "safetensors_files": len(files), "index": os.path.exists(
            os.path.join(d, "model.safetensors.index.json")), "written_dtype": written, "config_dtype": stored,
            "logits_max_rel_err_vs_peft_merge": rel, "max_abs_weight_diff": wdiff, "tol": args.tol, "ok": ok,
            "first_param_dtype_loaded": str(first.dtype)}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
