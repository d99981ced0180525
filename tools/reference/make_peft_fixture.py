#!/usr/bin/env python3
"""HF PEFT LoRA reference on the tiny Qwen2 fixture (tests/fixtures/qwen2_a, bf16 weights).

LoRA r=8, alpha=16, all seven projections, dropout 0, with fixed non-zero adapter values;
computed in fp32 on the CPU. Writes tests/fixtures/peft_a/ with PEFT's own save_pretrained
(adapter_config.json + adapter_model.safetensors) and reference.safetensors holding the
logits, the loss over the masked labels and the gradient of every lora_A / lora_B.
    python3 tools/reference/make_peft_fixture.py --base tests/fixtures/qwen2_a --out tests/fixtures/peft_a
"""
import argparse
import os

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="tests/fixtures/qwen2_a")
    ap.add_argument("--out", default="tests/fixtures/peft_a")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ref_in = load_file(os.path.join(args.base, "reference.safetensors"))
    model = Qwen2ForCausalLM.from_pretrained(args.base, dtype=torch.float32,
                                             attn_implementation="eager")
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                     target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    model.train()
    out = model(input_ids=ref_in["input_ids"], labels=ref_in["labels"])
    out.loss.backward()
    tensors = {"input_ids": ref_in["input_ids"], "labels": ref_in["labels"],
               "logits": out.logits.detach().float().contiguous(),
               "loss": out.loss.detach().float().reshape(1)}
    n = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            key = name.replace(".default", "")  # the name PEFT saves under
            tensors["grad." + key] = p.grad.detach().float().contiguous()
            n += p.numel()
    model.save_pretrained(args.out)
    save_file(tensors, os.path.join(args.out, "reference.safetensors"),
              metadata={"generator": "tools/reference/make_peft_fixture.py",
                        "peft": peft.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__})
    print(f"peft fixture: {n} trainable, loss {out.loss.item():.6f}, files {sorted(os.listdir(args.out))}")


if __name__ == "__main__":
    main()
