#!/usr/bin/env python3
"""Where a profiled training step's GPU time goes (a Kineto trace written by
R1DIST_PROFILE_STEP / R1DIST_PROFILE_OUT): CUDA kernel time summed by kind and by kernel,
against the step's wall span, so that the idle share (host-bound gaps) shows too. --by-op N
adds the N largest (launching ATen op < its caller, kernel) groups: which op's copies or
casts the time goes to.
    python3 tools/gpu/trace_summary.py trace.json [--top 25] [--by-op 30]
"""
import argparse
import collections
import json
import re

KINDS = [  # first match wins
    ("nf4 dequant", r"nf4|dequant"),
    ("attention (flash/efficient)", r"flash|fmha|attention|cutlass.*Kernel.*Attention"),
    ("gemm", r"gemm|cutlass|sm90_xmma|nvjet|cublas|xmma"),
    ("cross-entropy / softmax", r"softmax|nll|cross_entropy|log_softmax"),
    ("reduce", r"reduce"),
    ("fused (r1dist)", r"r1dist::fused"),
    ("copy / cast", r"copy|Memcpy|Memset|cast|fill"),
    ("elementwise", r"elementwise|vectorized|unrolled|index|cat|where|pow|mul|add"),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--by-op", type=int, default=0, help="also the N largest groups by launching op")
    args = ap.parse_args()
    events = json.load(open(args.trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    kernels = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]
    if not kernels:
        raise SystemExit(f"{args.trace}: no CUDA kernels in the trace")
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    busy = sum(e["dur"] for e in kernels)
    by_kind, by_name, count = collections.Counter(), collections.Counter(), collections.Counter()
    for e in kernels:
        name = re.sub(r"<.*", "", e["name"])[:90]
        by_kind[kind_of(e["name"])] += e["dur"]
        by_name[name] += e["dur"]
        count[name] += 1
    span = end - start
    print(f"GPU span {span / 1e3:.1f} ms, kernels busy {busy / 1e3:.1f} ms ({busy / span:.1%}), "
          f"{len(kernels)} kernels")
    print("| kind | ms | share of busy |")
    print("|---|---|---|")
    for kind, us in by_kind.most_common():
        print(f"| {kind} | {us / 1e3:.1f} | {us / busy:.1%} |")
    print(f"\ntop {args.top} kernels:")
    for name, us in by_name.most_common(args.top):
        print(f"{us / 1e3:9.1f} ms {us / busy:6.1%} {count[name]:7d}x  {name}")
    if args.by_op:
        by_op(events, kernels, busy, args.by_op)


def by_op(events, kernels, busy, top):
    """Kernel time by the CPU op that launched it (the innermost op holding the launch's
    External id) and that op's caller (the op enclosing it on its thread)."""
    ops = [e for e in events if e.get("cat") == "cpu_op" and "dur" in e]
    parent = {}
    for tid in {e["tid"] for e in ops}:
        stack = []
        for e in sorted((e for e in ops if e["tid"] == tid), key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1]["ts"] + stack[-1]["dur"] < e["ts"] + e["dur"]:
                stack.pop()
            parent[id(e)] = stack[-1]["name"] if stack else "-"
            stack.append(e)
    by_ext = {}
    for e in ops:
        ext = e.get("args", {}).get("External id")
        if ext is not None:
            by_ext[ext] = e
    groups, count = collections.Counter(), collections.Counter()
    for k in kernels:
        op = by_ext.get(k.get("args", {}).get("External id"))
        where = f"{op['name']} < {parent.get(id(op), '-')}" if op else "-"
        key = (where[:110], re.sub(r"<.*", "", k["name"])[:60])
        groups[key] += k["dur"]
        count[key] += 1
    print(f"\ntop {top} (op < caller, kernel):")
    for (where, name), us in groups.most_common(top):
        print(f"{us / 1e3:9.1f} ms {us / busy:6.1%} {count[(where, name)]:7d}x  {where} | {name}")


if __name__ == "__main__":
    main()
