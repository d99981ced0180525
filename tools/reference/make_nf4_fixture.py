#!/usr/bin/env python3
"""Independent NF4 reference (the NF4 code book and block layout of bitsandbytes), written from the format, not from r1dist.

Writes tests/fixtures/nf4/reference.safetensors: for each case, the input and the expected
packed codes, first-level absmax, double-quantised absmax (codes, per-256 scales, offset)
and the dequantised values. Element-by-element Python loops on purpose: slow, obvious.
    python3 tools/reference/make_nf4_fixture.py --out tests/fixtures/nf4
"""
import argparse
import math
import os

import torch
from safetensors.torch import save_file

CODE = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                     -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                     0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                     0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                     0.7229568362236023, 1.0], dtype=torch.float32)
THRESH = [(CODE[t] + CODE[t + 1]) / 2 for t in range(15)]  # float32 scalars


def dynamic_map_signed():
    # bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
    data = []
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def nf4_index(v):
    idx = 0
    for t in range(15):
        if v > THRESH[t]:   # strict '>' : a value on a threshold keeps the lower code
            idx = t + 1
    return idx


def quantize(x):
    n = x.numel()
    nb = (n + 63) // 64
    absmax = torch.zeros(nb, dtype=torch.float32)
    codes = []
    for b in range(nb):
        blk = x[b * 64:min(n, (b + 1) * 64)]
        a = blk.abs().max()
        absmax[b] = a
        for v in blk:
            codes.append(nf4_index(v / a) if a > 0 else 7)
    if len(codes) % 2:
        codes.append(7)  # pad nibble: the code of 0.0
    packed = torch.tensor([(codes[i] << 4) | codes[i + 1] for i in range(0, len(codes), 2)],
                          dtype=torch.uint8)
    # double quantisation of absmax
    offset = torch.tensor(float(sum(float(a) for a in absmax) / nb), dtype=torch.float32)
    centred = absmax - offset
    cmap = dynamic_map_signed()
    ng = (nb + 255) // 256
    scales = torch.zeros(ng, dtype=torch.float32)
    q = torch.zeros(nb, dtype=torch.uint8)
    for g in range(ng):
        grp = centred[g * 256:min(nb, (g + 1) * 256)]
        s = grp.abs().max()
        scales[g] = s
        for k, v in enumerate(grp):
            norm = v / s if s > 0 else torch.tensor(0.0)
            q[g * 256 + k] = int(torch.argmin((cmap - norm).abs()))  # first minimum: lower index
    absmax_dq = torch.stack([cmap[int(q[b])] * scales[b // 256] + offset for b in range(nb)])
    deq = torch.zeros(n, dtype=torch.float32)
    for i in range(n):
        deq[i] = CODE[codes[i]] * absmax_dq[i // 64]
    return packed, absmax, q, scales, offset.reshape(1), deq


def cases():
    g = torch.Generator().manual_seed(4)
    c = {}
    c["random"] = torch.randn(4096, generator=g) * 0.05
    c["scaled_blocks"] = (torch.randn(300, 64, generator=g) *
                          torch.rand(300, 1, generator=g) * 3).reshape(-1)
    c["zeros"] = torch.zeros(128)
    o = torch.full((64,), 0.01)
    o[10] = 100.0
    c["outlier"] = o
    c["negative"] = -(torch.rand(128, generator=g) + 0.5)
    c["exact_codes"] = (CODE * 3.0).repeat(4)
    m = torch.zeros(64)
    m[0] = 1.0
    m[1:16] = torch.stack(THRESH)
    c["thresholds"] = m
    c["odd"] = torch.randn(91, generator=g)
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/nf4")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = {"dynamic_map": dynamic_map_signed()}
    for name, x in cases().items():
        x = x.to(torch.float32).contiguous()
        packed, absmax, q, scales, offset, deq = quantize(x)
        out[f"{name}.input"] = x
        out[f"{name}.packed"] = packed
        out[f"{name}.absmax"] = absmax
        out[f"{name}.absmax_q"] = q
        out[f"{name}.absmax_scale"] = scales
        out[f"{name}.absmax_offset"] = offset
        out[f"{name}.dequantized"] = deq
        print(f"{name}: {x.numel()} values, {packed.numel()} bytes, {absmax.numel()} blocks")
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.out, "reference.safetensors"),
              metadata={"generator": "tools/reference/make_nf4_fixture.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
