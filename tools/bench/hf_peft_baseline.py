#!/usr/bin/env python3
"""HF transformers + PEFT LoRA training speed, the baseline that the GPU benchmarks run side by
side with the C++ trainer: a bf16 Qwen2 base on one GPU, SDPA attention, PEFT LoRA on all seven
projections (dropout 0), torch AdamW (fused), grad-norm clip 1.0 over the LoRA parameters,
gradient checkpointing on (non-reentrant) or off. Two data modes:
  fixed shape  random ids (labels = ids), every micro-batch (M, S), a step = A micro-batches;
  real rows    a JSONL of {"ids": [...], "labels": [...]} (-100 = no loss) fed as HF Trainer
               does: seeded shuffle per epoch, G rows a step in micro-batches of M right-padded
               to their own longest row, loss = token CE summed over the step / its label tokens.
--warmup untimed steps, then --steps timed ones (host clock after a synchronize at each step
end). Prints one JSON line: tokens/s over real and over padded (slot) tokens, peak memory, the
last loss; on CUDA out-of-memory the same line with "oom": true, and exit status 0.
    python3 tools/bench/hf_peft_baseline.py --model DIR --seq 2048 --micro-batch 4 --grad-accum 2
    python3 tools/bench/hf_peft_baseline.py --model DIR --rows rows.jsonl --global-batch 64 --micro-batch 2
"""
import argparse
import inspect
import json
import random
import sys
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def label_tokens(labels):
    """Tokens that carry loss after the model's internal shift: (labels[1:] != -100).sum()."""
    return sum(1 for x in labels[1:] if x != -100)


def fixed_steps(args, vocab, n):
    """n steps of A micro-batches (ids, attention_mask, labels, label tokens), plus real/slot tokens."""
    g = torch.Generator().manual_seed(args.seed)
    steps = []
    for _ in range(n):
        micro = []
        for _ in range(args.grad_accum):
            ids = torch.randint(0, vocab, (args.micro_batch, args.seq), generator=g)
            micro.append((ids, None, ids, args.micro_batch * (args.seq - 1)))
        tokens = args.grad_accum * args.micro_batch * args.seq
        steps.append((micro, tokens, tokens))
    return steps


def load_rows(path):
    rows, dropped = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if len(r["ids"]) != len(r["labels"]):
                raise SystemExit(f"{path}: a row with {len(r['ids'])} ids and {len(r['labels'])} labels")
            if label_tokens(r["labels"]) == 0:
                dropped += 1  # no loss at all: its mean CE would be 0/0
                continue
            rows.append((r["ids"], r["labels"]))
    log(f"{path}: {len(rows)} rows" + (f", {dropped} without label tokens dropped" if dropped else ""))
    return rows


def row_steps(args, rows, pad_id, n):
    """As HF Trainer + DataCollatorForSeq2Seq: seeded per-epoch shuffle, dynamic right padding."""
    def order():
        rng = random.Random(args.seed)
        while True:
            idx = list(range(len(rows)))
            rng.shuffle(idx)
            yield from idx
    it = order()
    steps = []
    for _ in range(n):
        micro, real, slot = [], 0, 0
        for _ in range(args.global_batch // args.micro_batch):
            batch = [rows[next(it)] for _ in range(args.micro_batch)]
            t = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([i + [pad_id] * (t - len(i)) for i, _ in batch])
            mask = torch.tensor([[1] * len(i) + [0] * (t - len(i)) for i, _ in batch])
            labels = torch.tensor([lab + [-100] * (t - len(lab)) for _, lab in batch])
            micro.append((ids, mask, labels, sum(label_tokens(lab) for _, lab in batch)))
            real += sum(len(i) for i, _ in batch)
            slot += len(batch) * t
        steps.append((micro, real, slot))
    return steps


def train_step(model, opt, params, micro):
    n_step = sum(m[3] for m in micro)
    step_loss = torch.zeros((), device="cuda")
    for ids, mask, labels, n in micro:
        out = model(input_ids=ids.cuda(), attention_mask=None if mask is None else mask.cuda(),
                    labels=labels.cuda())
        loss = out.loss * (n / n_step)  # mean over this micro-batch -> share of the step's token sum
        loss.backward()
        step_loss += loss.detach()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return step_loss


def run(args, res):
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa").cuda()
    model.config.use_cache = False
    if args.checkpointing == "on":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    cfg = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, bias="none",
                     target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.train()  # from_pretrained returns eval mode; checkpointing only acts in training mode
    res["load_s"] = round(time.time() - t0, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    log(f"loaded in {res['load_s']} s: {sum(p.numel() for p in params)} trainable LoRA parameters")
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, **({"fused": True} if fused else {}))
    n = args.warmup + args.steps
    if args.rows:
        pad_id = model.config.pad_token_id
        steps = row_steps(args, load_rows(args.rows), 0 if pad_id is None else pad_id, n)
    else:
        steps = fixed_steps(args, min(model.config.vocab_size, 150000), n)
    torch.cuda.reset_peak_memory_stats()
    times, real, slot = res["step_seconds"], 0, 0
    torch.cuda.synchronize()
    t_prev = time.perf_counter()
    for i, (micro, step_real, step_slot) in enumerate(steps):
        loss = train_step(model, opt, params, micro)
        torch.cuda.synchronize()
        now = time.perf_counter()
        dt, t_prev = now - t_prev, now
        res["loss"] = loss.item()
        if i >= args.warmup:
            times.append(round(dt, 4))
            real, slot = real + step_real, slot + step_slot
            res["steps"] = len(times)
        log(f"step {i + 1}/{n}{' (warm-up)' if i < args.warmup else ''}: {dt:.3f} s, loss {res['loss']:.4f}, "
            f"{step_real} tokens ({step_slot} slots)")
    total = sum(times)
    res.update(seconds=round(total, 4), tokens_per_s=round(real / total, 1),
               slot_tokens_per_s=round(slot / total, 1), padding_share=round(1 - real / slot, 4))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--seq", type=int, help="fixed-shape mode: tokens per row")
    ap.add_argument("--grad-accum", type=int, default=1, help="fixed-shape mode: micro-batches per step")
    ap.add_argument("--rows", help="real-rows mode: JSONL of {\"ids\": [...], \"labels\": [...]}")
    ap.add_argument("--global-batch", type=int, default=64, help="real-rows mode: rows per step")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--checkpointing", choices=["on", "off"], default="on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    if (args.seq is None) == (args.rows is None):
        ap.error("give exactly one of --seq (fixed shape) or --rows (real rows)")
    if args.rows and args.global_batch % args.micro_batch:
        ap.error("--global-batch must be a multiple of --micro-batch")
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    res = {"impl": "hf_peft", "model": args.model, "mode": "rows" if args.rows else "fixed",
           "seq": args.seq, "micro_batch": args.micro_batch}
    if args.rows:
        res["global_batch"] = args.global_batch
    else:
        res["grad_accum"] = args.grad_accum
    res.update(checkpointing=args.checkpointing == "on", oom=False, steps=0, step_seconds=[],
               torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__)
    try:
        run(args, res)
    except torch.cuda.OutOfMemoryError as e:
        res["oom"] = True
        log("out of memory: " + str(e).splitlines()[0])
    res["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
