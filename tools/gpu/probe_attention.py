"""Attention forms for GQA training on one GPU: time of forward + backward and the memory a
layer keeps for the backward (what stays allocated after the forward), for the presets'
head shapes at one sequence length. Decides how Qwen2Model::attention calls libtorch.

Forms: the SDPA backends (cuDNN, flash, efficient) with keys/values repeated to the query
heads (repeat_kv, as r1dist did) or with enable_gqa, and the variable-length flash kernel
(one row per batch element). Each reads q/k/v from the projections' (B, T, heads, D) layout
and hands o_proj a (B, T, heads * D) input; whether that is a copy is printed.

Usage: python3 tools/gpu/probe_attention.py [--seq 8192] [--batch 1]
"""
import argparse
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

SHAPES = {"1.5b": (12, 2), "7b": (28, 4), "14b": (40, 8)}  # (query heads, kv heads), D = 128
D = 128


def repeat_kv(x, rep):  # (B, n, T, D) -> (B, n * rep, T, D)
    b, n, t, d = x.shape
    return x[:, :, None].expand(b, n, rep, t, d).reshape(b, n * rep, t, d)


def form(name, q, k, v):
    """q (B, T, nh, D), k/v (B, T, nkv, D) -> o_proj input (B, T, nh * D)."""
    b, t, nh, _ = q.shape
    rep = nh // k.shape[2]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if name == "varlen":
        cu = torch.arange(0, (b + 1) * t, t, dtype=torch.int32, device=q.device)
        out = torch.ops.aten._flash_attention_forward(q.reshape(b * t, nh, D), k.reshape(b * t, -1, D),
                                                      v.reshape(b * t, -1, D), cu, cu, t, t, 0.0, True, False,
                                                      scale=D ** -0.5)[0]
        return out.view(b, t, nh * D)
    backend, gqa = name.split("+")
    kb = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
          "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    with sdpa_kernel([kb]):
        if gqa == "gqa":
            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
        else:
            out = F.scaled_dot_product_attention(qt, repeat_kv(kt, rep), repeat_kv(vt, rep), is_causal=True)
    return out.transpose(1, 2).reshape(b, t, nh * D)


def measure(name, b, t, nh, nkv, iters=10):
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(b, t, nh, D, device=dev, dtype=dt, requires_grad=True)
    k = torch.randn(b, t, nkv, D, device=dev, dtype=dt, requires_grad=True)
    v = torch.randn(b, t, nkv, D, device=dev, dtype=dt, requires_grad=True)
    try:
        out = form(name, q, k, v)
    except Exception as e:  # a backend that does not take this form
        return f"{name:16s} not available: {str(e).splitlines()[0][:110]}"
    g = torch.randn_like(out)
    del out
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    out = form(name, q, k, v)
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated() - base  # o_proj's input and what the backward keeps
    contiguous_view = out._base is not None
    out.backward(g)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        form(name, q, k, v).backward(g)
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / iters
    flops = 4 * b * t * t * nh * D / 2 * 3.5  # causal: fwd 2 GEMMs, bwd 5 (2.5x fwd)
    per_tok = kept / (b * t) / (nh * D) / 2
    return (f"{name:16s} {ms:7.2f} ms fwd+bwd  {flops / ms / 1e9:6.0f} TFLOP/s  kept {kept / 1e6:7.1f} MB "
            f"= {per_tok:4.2f} x hidden per token  o_proj input is a view: {contiguous_view}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, seq {a.seq} x batch {a.batch}")
    for preset, (nh, nkv) in SHAPES.items():
        print(f"-- {preset}: {nh} query heads, {nkv} kv heads")
        for name in ["cudnn+repeat", "cudnn+gqa", "flash+repeat", "flash+gqa", "efficient+gqa", "varlen"]:
            print(measure(name, a.batch, a.seq, nh, nkv), flush=True)


if __name__ == "__main__":
    main()
