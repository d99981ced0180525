#!/usr/bin/env python3
"""HF transformers `generate` in the setting of `r1dist bench generate` (the baseline of
the decode comparison in docs/PERFORMANCE.md): bf16 on one GPU, SDPA attention, greedy, a random prompt of
--prompt-len tokens, --new-tokens forced (no EOS), median of --reps timed calls after a
short warm-up. Prints one JSON line per batch size.
    python3 tools/bench/hf_generate.py --model DIR --batch 1,16
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).cuda().eval()
    load_s = time.time() - t0
    g = torch.Generator().manual_seed(7)
    vocab = min(model.config.vocab_size, 150000)
    for b in [int(x) for x in args.batch.split(",")]:
        ids = torch.randint(0, vocab, (b, args.prompt_len), generator=g).cuda()
        mask = torch.ones_like(ids)
        kw = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=0,
                  top_p=None, top_k=None, temperature=None)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)
            times = []
            for _ in range(args.reps):
                torch.cuda.synchronize()
                t = time.perf_counter()
                out = model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, **kw)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        assert out.shape[1] == args.prompt_len + args.new_tokens, out.shape
        s = statistics.median(times)
        print(json.dumps({"impl": "transformers " + transformers.__version__, "model": args.model, "batch": b,
                          "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "seconds": round(s, 4),
                          "tokens_per_s": round(b * args.new_tokens / s, 2), "load_s": round(load_s, 1),
                          "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}), flush=True)


if __name__ == "__main__":
    main()
