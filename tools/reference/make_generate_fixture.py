#!/usr/bin/env python3
"""HF transformers references for r1dist's generation and merge (tests/fixtures/generate/).

Run where torch + transformers + peft are installed (the GPU machine), from the repo root:
    python3 tools/reference/make_generate_fixture.py --out tests/fixtures/generate

1. Greedy generation on the tiny Qwen2 fixtures (qwen2_a, qwen2_b), fp32 on the CPU: three
   prompts of different lengths, 24 new tokens each (EOS disabled so every row runs to the
   limit), generated one prompt at a time and as one left-padded batch with an attention
   mask, each with and without the KV cache. -> <model>.json
2. PEFT's own merge of tests/fixtures/peft_a into qwen2_a (merge_and_unload, fp32), and the
   logits of the merged model on the fixture ids. -> peft_merge.safetensors
"""
import argparse
import json
import os

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

NEW_TOKENS = 24
PROMPT_LENGTHS = (5, 11, 17)


def generate(model, prompts, use_cache, pad_id):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, use_cache=use_cache,
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
                             pad_token_id=pad_id, top_p=None, top_k=None, temperature=None)
    return [row[width:].tolist() for row in out]


def generation_fixture(base, out_path, seed):
    model = Qwen2ForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    # Prompts avoid the special ids at the top of the vocabulary.
    prompts = [torch.randint(0, vocab - 2, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    pad_id = 0
    case = {"model": base, "new_tokens": NEW_TOKENS, "pad_id": pad_id, "prompts": prompts,
            "attn_implementation": model.config._attn_implementation,
            "transformers": transformers.__version__, "torch": torch.__version__}
    for use_cache in (True, False):
        key = "cache" if use_cache else "no_cache"
        case["single_" + key] = [generate(model, [p], use_cache, pad_id)[0] for p in prompts]
        case["batch_" + key] = generate(model, prompts, use_cache, pad_id)
    with open(out_path, "w") as f:
        json.dump(case, f, indent=1)
    same = sum(a == b for a, b in zip(case["single_cache"], case["batch_cache"]))
    print(f"{out_path}: {len(prompts)} prompts, batched == single for {same} of {len(prompts)}")


def merge_fixture(base, adapter, out_path):
    ref = load_file(os.path.join(adapter, "reference.safetensors"))
    model = Qwen2ForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    with torch.no_grad():
        logits = merged(input_ids=ref["input_ids"]).logits.float().contiguous()
    tensors = {"input_ids": ref["input_ids"], "logits_merged": logits}
    for name, p in merged.state_dict().items():
        if any(k in name for k in ("q_proj.weight", "down_proj.weight")) and ".0." in name:
            tensors["weight." + name] = p.float().contiguous()
    save_file(tensors, out_path, metadata={"generator": "tools/reference/make_generate_fixture.py",
                                           "peft": peft.__version__, "transformers": transformers.__version__})
    print(f"{out_path}: merged logits {tuple(logits.shape)}, "
          f"max |merged - unmerged adapter logits| {float((logits - ref['logits']).abs().max()):.3e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/generate")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    generation_fixture("tests/fixtures/qwen2_a", os.path.join(args.out, "qwen2_a.json"), seed=11)
    generation_fixture("tests/fixtures/qwen2_b", os.path.join(args.out, "qwen2_b.json"), seed=12)
    merge_fixture("tests/fixtures/qwen2_a", "tests/fixtures/peft_a", os.path.join(args.out, "peft_merge.safetensors"))


if __name__ == "__main__":
    main()
