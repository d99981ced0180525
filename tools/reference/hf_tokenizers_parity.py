#!/usr/bin/env python3
"""r1dist tokenizer vs HF `tokenizers` (Rust, through its Python binding), for the GPU machine.

Reads the parity corpus (JSON Lines: a JSON string per line, or an object with "text"),
encodes every text with HF `tokenizers` on ONE thread (no special tokens, as r1dist's
default), compares with the ids r1dist wrote for the same corpus (`r1dist tokenize --jsonl`,
one JSON array per line), optionally compares HF's decoding of those ids with r1dist's
(`r1dist tokenize --jsonl IDS --decode`), and times single-thread encoding. Prints one
summary line; exits 1 on any mismatch.

  python3 tools/reference/hf_tokenizers_parity.py --tokenizer DIR --corpus CORPUS.jsonl \
      --ids R1DIST_IDS.jsonl [--decoded R1DIST_DECODED.jsonl] [--out HF_IDS.jsonl] [--repeat 3]
"""
import argparse
import json
import os
import sys
import time

# One thread: HF tokenizers parallelises batch calls with rayon; single encode() calls are
# sequential anyway, but keep its pool to one thread so nothing runs beside the timer.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--ids", required=True, help="r1dist's ids for the corpus")
    ap.add_argument("--decoded", help="r1dist's decoding of its ids (JSON strings, one per line)")
    ap.add_argument("--out", help="write HF's ids here (JSON Lines)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    texts = [r["text"] if isinstance(r, dict) else r for r in read_jsonl(a.corpus)]
    want = read_jsonl(a.ids)
    if len(want) != len(texts):
        print(f"hf_tokenizers_parity: {a.ids} has {len(want)} lines, {a.corpus} {len(texts)}", file=sys.stderr)
        return 1
    nbytes = sum(len(t.encode("utf-8")) for t in texts)

    seconds, hf = [], None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        seconds.append(time.perf_counter() - t0)
        hf = hf or ids
    if a.out:
        with open(a.out, "w") as f:
            for ids in hf:
                f.write(json.dumps(ids) + "\n")

    bad = [i for i in range(len(texts)) if hf[i] != want[i]]
    for i in bad[:5]:
        h, w = hf[i], want[i]
        k = next((j for j in range(min(len(h), len(w))) if h[j] != w[j]), min(len(h), len(w)))
        print(f"  mismatch text {i} {json.dumps(texts[i][:120], ensure_ascii=False)}: first difference at id {k}: "
              f"HF {h[k:k + 5]} r1dist {w[k:k + 5]} ({len(h)} vs {len(w)} ids)", file=sys.stderr)

    # decode parity: HF's decoding of r1dist's ids against r1dist's own
    dec_bad = 0
    if a.decoded:
        mine = read_jsonl(a.decoded)
        for i in range(len(texts)):
            theirs = tok.decode(want[i], skip_special_tokens=False)
            if theirs != mine[i]:
                dec_bad += 1
                if dec_bad <= 5:
                    print(f"  decode mismatch text {i}: HF {json.dumps(theirs[:80], ensure_ascii=False)} "
                          f"r1dist {json.dumps(mine[i][:80], ensure_ascii=False)}", file=sys.stderr)
    mb = nbytes / 1e6
    print(f"hf_tokenizers {tokenizers.__version__}: {len(texts)} texts, {nbytes} bytes, {sum(map(len, hf))} tokens, "
          f"{len(bad)} id mismatches, {dec_bad if a.decoded else 'unchecked'} decode mismatches vs r1dist; single-thread encode "
          f"first pass {mb / seconds[0]:.2f} MB/s, best of {a.repeat} {mb / min(seconds):.2f} MB/s")
    return 1 if bad or dec_bad else 0


if __name__ == "__main__":
    sys.exit(main())
