#!/usr/bin/env python3
"""Writes the Qwen2 parity fixtures under tests/fixtures/ with HF transformers.

Run on a machine with torch + transformers (the GPU machine):
    python3 tools/reference/make_qwen2_fixture.py --out tests/fixtures
Each fixture is a tiny random Qwen2ForCausalLM saved with save_pretrained (one single-file
in bf16, one sharded in fp32) plus reference.safetensors holding input ids, labels with
ignored positions, fp32 logits and losses from the eager reference forward, and, when CUDA is
present, bf16 logits computed on the GPU.
"""
import argparse
import inspect
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

FIXTURES = {
    # GQA ratio 2, bf16 weights in one file (the layout of the 1.5B release).
    "qwen2_a": dict(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                    rms_norm_eps=1e-6, max_position_embeddings=512, saved_dtype=torch.bfloat16,
                    max_shard_size=None, seed=1),
    # GQA ratio 3, fp32 weights sharded through model.safetensors.index.json (the 7B/14B layout).
    "qwen2_b": dict(vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=6, num_key_value_heads=2, rope_theta=1000000.0,
                    rms_norm_eps=1e-5, max_position_embeddings=256, saved_dtype=torch.float32,
                    max_shard_size="64KB", seed=2),
}
SEQ_LEN = 24
BATCH = 2


def make_config(spec):
    kw = dict(vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"],
              intermediate_size=spec["intermediate_size"],
              num_hidden_layers=spec["num_hidden_layers"],
              num_attention_heads=spec["num_attention_heads"],
              num_key_value_heads=spec["num_key_value_heads"],
              rms_norm_eps=spec["rms_norm_eps"],
              max_position_embeddings=spec["max_position_embeddings"],
              tie_word_embeddings=False, use_sliding_window=False,
              bos_token_id=spec["vocab_size"] - 2, eos_token_id=spec["vocab_size"] - 1)
    # transformers 5 keeps rope_theta inside rope_parameters; 4.x takes it directly.
    if "rope_parameters" in inspect.signature(Qwen2Config.__init__).parameters:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": spec["rope_theta"]}
    else:
        kw["rope_theta"] = spec["rope_theta"]
    return Qwen2Config(**kw)


def randomize(model, gen):
    # Every parameter random, biases and norms included, so a dropped bias or a wrong
    # norm shows in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * r)
            elif name.endswith("bias"):
                p.copy_(0.2 * r)
            else:
                p.copy_(0.08 * r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    for name, spec in FIXTURES.items():
        out = os.path.join(args.out, name)
        shutil.rmtree(out, ignore_errors=True)
        gen = torch.Generator().manual_seed(spec["seed"])
        model = Qwen2ForCausalLM(make_config(spec))
        randomize(model, gen)
        model = model.to(spec["saved_dtype"])
        kw = {"max_shard_size": spec["max_shard_size"]} if spec["max_shard_size"] else {}
        model.save_pretrained(out, **kw)

        ref = Qwen2ForCausalLM.from_pretrained(out, dtype=torch.float32,
                                               attn_implementation="eager").eval()
        ids = torch.randint(0, spec["vocab_size"], (BATCH, SEQ_LEN), generator=gen)
        labels = ids.clone()
        labels[0, :5] = -100      # prompt-masked row
        labels[1, -4:] = -100     # padded tail
        with torch.no_grad():
            full = ref(input_ids=ids, labels=ids)
            masked = ref(input_ids=ids, labels=labels)
        tensors = {
            "input_ids": ids.to(torch.int64).contiguous(),
            "labels": labels.to(torch.int64).contiguous(),
            "logits": full.logits.float().contiguous(),
            "loss": full.loss.float().reshape(1),
            "loss_masked": masked.loss.float().reshape(1),
        }
        if torch.cuda.is_available():
            gpu = Qwen2ForCausalLM.from_pretrained(out, dtype=torch.bfloat16,
                                                   attn_implementation="eager").cuda().eval()
            with torch.no_grad():
                o = gpu(input_ids=ids.cuda(), labels=ids.cuda())
            tensors["logits_bf16_cuda"] = o.logits.float().cpu().contiguous()
            tensors["loss_bf16_cuda"] = o.loss.float().cpu().reshape(1)
        save_file(tensors, os.path.join(out, "reference.safetensors"),
                  metadata={"generator": "tools/reference/make_qwen2_fixture.py",
                            "transformers": __import__("transformers").__version__,
                            "torch": torch.__version__})
        files = sorted(os.listdir(out))
        size = sum(os.path.getsize(os.path.join(out, f)) for f in files)
        print(f"{name}: {len(files)} files, {size} bytes, loss {full.loss.item():.6f}, "
              f"masked {masked.loss.item():.6f}: {files}")
        with open(os.path.join(out, "config.json")) as f:
            print(json.dumps(json.load(f), sort_keys=True))


if __name__ == "__main__":
    main()
