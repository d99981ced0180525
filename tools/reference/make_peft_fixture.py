#!/usr/bin/env python3
"""HF PEFT LoRA reference on the tiny Qwen2 fixture (tests/fixtures/qwen2_a, bf16 weights).

LoRA r=8, alpha=16, all seven projections, dropout 0, with fixed non-zero adapter values;
computed in fp32 on the CPU. Writes tests/fixtures/peft_a/ with PEFT's own save_pretrained
(adapter_config.json + adapter_model.safetensors) and reference.safetensors holding the
logits, the loss over the masked labels and the gradient of every lora_A / lora_B.
    python3 tools/reference/make_peft_fixture.py --base tests/fixtures/qwen2_a --out tests/fixtures/peft_a
With --patterns, the same with PEFT's per-module settings: layer 1's k_proj at r 4
(rank_pattern), q_proj at alpha 32 and layer 0's at 64 (alpha_pattern: the first key that
matches wins, in the order of the saved adapter_config.json, which PEFT sorts: layer 0's q_proj
takes 64), computed from the saved files reloaded by PeftModel.from_pretrained ->
tests/fixtures/peft_b.
"""
import argparse
import os

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="tests/fixtures/qwen2_a")
    ap.add_argument("--out", default="tests/fixtures/peft_a")
    ap.add_argument("--patterns", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ref_in = load_file(os.path.join(args.base, "reference.safetensors"))
    model = Qwen2ForCausalLM.from_pretrained(args.base, dtype=torch.float32,
                                             attn_implementation="eager")
    patterns = {}
    if args.patterns:
        patterns = {"rank_pattern": {"model.layers.1.self_attn.k_proj": 4},
                    "alpha_pattern": {"q_proj": 32, "layers.0.self_attn.q_proj": 64}}
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                     target_modules=TARGETS, task_type="CAUSAL_LM", **patterns)
    model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(5)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
                n += p.numel()
    model.save_pretrained(args.out)
    # The reference is what PEFT computes from the saved files. (PEFT writes
    # adapter_config.json with sorted keys, so a reader meets the patterns in another order than
    # the LoraConfig above, which decides when two keys match one module: the first wins.)
    base = Qwen2ForCausalLM.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, args.out, is_trainable=True)
    model.train()
    out = model(input_ids=ref_in["input_ids"], labels=ref_in["labels"])
    out.loss.backward()
    tensors = {"input_ids": ref_in["input_ids"], "labels": ref_in["labels"],
               "logits": out.logits.detach().float().contiguous(),
               "loss": out.loss.detach().float().reshape(1)}
    for name, p in model.named_parameters():
        if "lora_" in name:
            tensors["grad." + name.replace(".default", "")] = p.grad.detach().float().contiguous()  # PEFT's saved name
    save_file(tensors, os.path.join(args.out, "reference.safetensors"),
              metadata={"generator": "tools/reference/make_peft_fixture.py",
                        "peft": peft.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__})
    if args.patterns:
        scalings = {name: m.scaling["default"] for name, m in model.named_modules() if hasattr(m, "scaling")
                    and isinstance(getattr(m, "scaling"), dict) and "default" in m.scaling}
        print("scalings:", {k.split("model.model.")[-1]: v for k, v in scalings.items() if "layers.0" in k or "layers.1.self_attn.k" in k})
    print(f"peft fixture: {n} trainable, loss {out.loss.item():.6f}, files {sorted(os.listdir(args.out))}")


if __name__ == "__main__":
    main()
