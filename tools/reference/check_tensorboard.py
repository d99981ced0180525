#!/usr/bin/env python3
"""Does TensorBoard itself read a run's event files as the run's metrics.h5?

Loads RUN_DIR/tensorboard with TensorBoard's EventAccumulator (the loader behind
`tensorboard --logdir`; every scalar kept, no sampling) and compares each scalar series with
the matching column of `r1dist metrics RUN_DIR/metrics.h5` (TSV): tags train/<column of
steps> and eval/<column of evals>, the same steps in the same order (each once), and, when
the run has a final evaluation, suite/<name> of `r1dist metrics --table eval`, one event at
the last step; values equal as float32 (the TSV's 9 significant digits rounded to float32
may differ in the last place).
Prints one line per series (tag, events) and a summary; exits 1 on any difference.
    python3 tools/reference/check_tensorboard.py RUN_DIR [--r1dist build/r1dist]
"""
import argparse
import os
import struct
import subprocess
import sys

from tensorboard.backend.event_processing import event_accumulator


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def metrics_tables(r1dist, path):
    out = subprocess.run([r1dist, "metrics", path], check=True, capture_output=True, text=True).stdout
    final = subprocess.run([r1dist, "metrics", path, "--table", "eval"], capture_output=True, text=True)
    if final.returncode == 0:  # 1: no /eval group (no final evaluation)
        out += "# eval\n" + final.stdout
    tables, name, header = {}, None, None
    for line in out.splitlines():
        if line.startswith("# "):
            name, header = line[2:], None
            tables[name] = []
        elif line and name:
            fields = line.split("\t")
            if header is None:
                header = fields
            else:
                tables[name].append(dict(zip(header, fields)))
    return tables


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--r1dist", default="build/r1dist", help="the r1dist binary (for `r1dist metrics`)")
    a = ap.parse_args()
    tb_dir = os.path.join(a.run_dir, "tensorboard")
    acc = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}

    tables = metrics_tables(a.r1dist, os.path.join(a.run_dir, "metrics.h5"))
    want = {}
    last_step = max([int(r["step"]) for r in tables.get("steps", [])] + [0])
    for row in tables.get("eval", []):
        want[f"suite/{row['name']}"] = [(last_step, f32(float(row["value"])))]
    for table, group in (("steps", "train"), ("evals", "eval")):
        for row in tables.get(table, []):
            for col, text in row.items():
                if col != "step":
                    want.setdefault(f"{group}/{col}", []).append((int(row["step"]), f32(float(text))))

    bad = []
    for tag in sorted(set(got) - set(want)):
        bad.append(f"{tag}: in the event files, no column of metrics.h5")
    for tag, rows in sorted(want.items()):
        events = got.get(tag, [])
        print(f"{tag}\t{len(events)} events\t{len(rows)} rows")
        if [s for s, _ in events] != [s for s, _ in rows]:
            bad.append(f"{tag}: steps {[s for s, _ in events]} in the event files, {[s for s, _ in rows]} in metrics.h5")
            continue
        for (s, v), (_, w) in zip(events, rows):
            if abs(v - w) > abs(w) * 2.0 ** -22:
                bad.append(f"{tag}: step {s}: {v!r} in the event files, {w!r} in metrics.h5")
                break
    n_events = sum(len(v) for v in got.values())
    print(f"check_tensorboard: {len(want)} series from metrics.h5, {len(got)} in {tb_dir} ({n_events} scalars)")
    for b in bad:
        print("MISMATCH " + b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
