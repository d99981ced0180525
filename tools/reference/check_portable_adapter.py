#!/usr/bin/env python3
"""Does an adapter exported by r1dist load with PEFT somewhere else, under other names?

Copies the base model directory and the exported adapter directory to a fresh temporary
directory under new names (so neither the training path recorded anywhere nor the original
folder names can be what makes it work), then:
  1. checks adapter_config.json's base_model_name_or_path is a hub id ("owner/name") or a
     bare name, never a filesystem path, and that README.md is a PEFT model card (YAML front
     matter with base_model equal to it and library_name: peft);
  2. loads the base with AutoModelForCausalLM.from_pretrained(NEW_BASE) and the adapter with
     PeftModel.from_pretrained(base, NEW_ADAPTER): the hub id is mapped to the new base
     location by giving the base explicitly, as a user who downloaded both would;
  3. runs a forward on a few tokens (fp32, CPU) and checks the logits are finite and that the
     adapter changes them;
  4. with --r1dist BINARY: merges the same adapter with `r1dist merge --out-dtype fp32` and
     scores the same tokens with `r1dist score --dtype fp32 --device cpu`; the per-token
     log-probs must agree with PEFT's within --tol (absolute, nats).
Prints one JSON line; exits 1 on any failure (2 on bad arguments).
    python3 tools/reference/check_portable_adapter.py --base models/R1-1.5B \\
        --adapter runs/v6/adapter --r1dist build/r1dist
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def fail(report, why):
    report["ok"] = False
    report.setdefault("failures", []).append(why)


def check_files(adapter, report):
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        conf = json.load(f)
    base_id = conf.get("base_model_name_or_path", "")
    report["base_model_name_or_path"] = base_id
    if not base_id:
        fail(report, "adapter_config.json has no base_model_name_or_path")
    elif not (HUB_ID.match(base_id) or ("/" not in base_id and base_id not in (".", ".."))):
        fail(report, f"base_model_name_or_path {base_id!r} is a path, not a hub id")
    card_path = os.path.join(adapter, "README.md")
    if not os.path.isfile(card_path):
        fail(report, "README.md (the model card) is missing")
        return
    with open(card_path, encoding="utf-8") as f:
        card = f.read()
    m = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    if not m:
        fail(report, "README.md has no YAML front matter")
        return
    front = m.group(1)
    if "library_name: peft" not in front:
        fail(report, "README.md front matter lacks library_name: peft")
    bm = re.search(r"^base_model:\s*(.+)$", front, re.M)
    value = bm.group(1).strip() if bm else ""
    if value.startswith('"'):
        value = json.loads(value)
    if value != base_id:
        fail(report, f"README.md base_model {value!r} differs from adapter_config.json's {base_id!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the base model directory (HF format)")
    ap.add_argument("--adapter", required=True, help="the adapter directory r1dist exported (RUN_DIR/adapter)")
    ap.add_argument("--r1dist", help="r1dist binary: also compare log-probs with r1dist merge + score")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per sequence")
    ap.add_argument("--tol", type=float, default=2e-3, help="largest |log-prob difference| allowed (nats)")
    args = ap.parse_args()
    for d in (args.base, args.adapter):
        if not os.path.isdir(d):
            print(f"check_portable_adapter: {d} is not a directory", file=sys.stderr)
            return 2
    report = {"ok": True, "base": args.base, "adapter": args.adapter}
    check_files(args.adapter, report)
    with tempfile.TemporaryDirectory(prefix="portable-adapter-") as tmp:
        new_base = os.path.join(tmp, "elsewhere", "some-base-copy")
        new_adapter = os.path.join(tmp, "shared", "renamed-adapter")
        shutil.copytree(args.base, new_base, symlinks=False)
        shutil.copytree(args.adapter, new_adapter, symlinks=False)
        try:
            base = AutoModelForCausalLM.from_pretrained(new_base, dtype=torch.float32, attn_implementation="eager")
            vocab = base.config.vocab_size
            ids = torch.randint(0, vocab, (2, args.tokens), generator=torch.Generator().manual_seed(7))
            with torch.no_grad():
                base_logits = base(input_ids=ids).logits.float().clone()
            model = PeftModel.from_pretrained(base, new_adapter)
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=ids).logits.float()
        except Exception as e:  # noqa: BLE001: any failure to load or run is the finding
            fail(report, f"PEFT could not load or run the moved adapter: {type(e).__name__}: {e}")
            print(json.dumps(report))
            return 1
        report["logits_finite"] = bool(torch.isfinite(logits).all())
        report["adapter_changes_logits"] = float((logits - base_logits).abs().max())
        if not report["logits_finite"]:
            fail(report, "PEFT logits are not finite")
        if report["adapter_changes_logits"] == 0.0:
            fail(report, "the adapter does not change the logits (were its tensors loaded?)")
        if args.r1dist:
            merged = os.path.join(tmp, "merged")
            ids_path = os.path.join(tmp, "ids.json")
            with open(ids_path, "w") as f:
                json.dump(ids.tolist(), f)
            r = subprocess.run([args.r1dist, "merge", "--model", new_base, "--adapter", new_adapter, "--out", merged,
                                "--out-dtype", "fp32", "--device", "cpu", "--dtype", "fp32"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(report, f"r1dist merge failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
            else:
                r = subprocess.run([args.r1dist, "score", "--model", merged, "--ids", ids_path, "--dtype", "fp32",
                                    "--device", "cpu"], capture_output=True, text=True)
                if r.returncode != 0:
                    fail(report, f"r1dist score failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
                else:
                    scored = json.loads(r.stdout)["sequences"]
                    logp = torch.log_softmax(logits.double()[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                    mine = torch.tensor([s["logprobs"] for s in scored], dtype=torch.float64)
                    diff = float((mine - logp).abs().max())
                    report["max_abs_logprob_diff_vs_r1dist"] = diff
                    if not diff <= args.tol:
                        fail(report, f"r1dist's log-probs differ from PEFT's by {diff:.3g} > {args.tol}")
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
