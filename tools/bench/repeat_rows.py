#!/usr/bin/env python3
"""N training rows as JSON Lines from a JSON array or JSONL file of medical-o1 rows (Question,
Complex_CoT, Response), repeating the file's rows in order as often as needed (the packing
benchmark: 500 rows drawn from real rows of the training data).
    python3 tools/bench/repeat_rows.py ROWS.json 500 out.jsonl
"""
import json
import sys


def main():
    src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    text = open(src, encoding="utf-8").read()
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    keep = ("Question", "Complex_CoT", "Response")
    rows = [{k: r[k] for k in keep} for r in rows if all(isinstance(r.get(k), str) for k in keep)]
    if not rows:
        raise SystemExit(f"{src}: no rows with {', '.join(keep)}")
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(rows[i % len(rows)], ensure_ascii=False) + "\n")
    print(f"{out}: {n} rows from the {len(rows)} of {src}", file=sys.stderr)


if __name__ == "__main__":
    main()
