#!/usr/bin/env python3
"""Reads GGUF files written by `r1dist export` with the reference readers where they exist:
the `gguf` Python package (llama.cpp's gguf-py: GGUFReader, and its dequantisation) and
transformers' GGUF loader (`from_pretrained(dir, gguf_file=...)`, which itself needs gguf).
For each file: every tensor dequantised by gguf-py against the merged HF model (the
safetensors r1dist merge writes) with the type's error bound, then the logits of a few tokens
from transformers' model loaded from the GGUF file against the merged model's.
Prints one JSON line per file; exits 1 on a failure, 3 when the gguf package is missing.
    python3 tools/reference/check_gguf_transformers.py --merged DIR F1.gguf [F2.gguf ...]
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--merged", required=True, help="HF directory of the merged model (fp32)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    try:
        import gguf
    except ImportError:
        print(json.dumps({"check": "gguf", "skipped": "the gguf package is not installed"}))
        return 3
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM
    import glob
    ref = {}
    for f in glob.glob(args.merged + "/*.safetensors"):
        ref.update(load_file(f))
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                 "post_attention_layernorm": "ffn_norm"}
    for hf in ref:
        if hf.startswith("model.layers."):
            parts = hf.split(".")
            i, rest = parts[2], ".".join(parts[3:])
            mod, kind = rest.rsplit(".", 1)
            names[hf] = f"blk.{i}.{per_layer[mod]}.{kind}"
    bad = 0
    model = AutoModelForCausalLM.from_pretrained(args.merged, torch_dtype=torch.float32)
    ids = torch.tensor([[151646, 100, 2000, 30000, 5, 77, 1234, 151643]])
    with torch.no_grad():
        want = model(ids).logits
    for path in args.files:
        r = gguf.GGUFReader(path)
        tensors = {t.name: t for t in r.tensors}
        worst = 0.0
        problems = []
        for hf, g in names.items():
            if hf not in ref:
                continue
            if g not in tensors:
                problems.append("missing " + g)
                continue
            t = tensors[g]
            x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref[hf].shape).astype(np.float32)
            err = float(np.max(np.abs(x - ref[hf].astype(np.float32))))
            scale = float(np.max(np.abs(ref[hf]))) or 1.0
            bound = {gguf.GGMLQuantizationType.F32: 0.0, gguf.GGMLQuantizationType.F16: 1e-3 * scale,
                     gguf.GGMLQuantizationType.BF16: 8e-3 * scale,
                     gguf.GGMLQuantizationType.Q8_0: 0.6 / 127 * scale}.get(t.tensor_type, 0.05 * scale)
            if err > bound:
                problems.append(f"{g}: max err {err:.3g} > {bound:.3g} ({t.tensor_type.name})")
            worst = max(worst, err / scale)
        extra = set(tensors) - set(names.values())
        if extra:
            problems.append("unexpected tensors " + ",".join(sorted(extra)))
        logit_err = None
        try:
            import os
            m = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                                     gguf_file=os.path.basename(path), torch_dtype=torch.float32)
            with torch.no_grad():
                got = m(ids).logits
            logit_err = float((got - want).abs().max())
        except Exception as e:  # transformers' loader may not know a type; say so
            logit_err = "transformers could not load it: " + str(e)[:200]
        ok = not problems
        bad += not ok
        print(json.dumps({"check": "gguf", "file": path, "tensors": len(tensors), "max_rel_err": worst,
                          "transformers_logits_max_abs_err": logit_err, "ok": ok, "problems": problems[:10]}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
