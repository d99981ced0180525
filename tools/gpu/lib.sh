# Sourced by the GPU scripts, from the repository root: the build environment
# (launch/env.sh), OUT (results; default /tmp/r1dist-gpu) and W (work folder; R1DIST_GPU_WORK,
# else the caller's default) created, R the binary (R1DIST_BIN, default build-gpu/r1dist), and
# the helpers the scripts share.
# Usage: source tools/gpu/lib.sh [DEFAULT_WORK_DIR]
OUT=${OUT:-/tmp/r1dist-gpu}
W=${R1DIST_GPU_WORK:-${1:-/tmp/r1dist-bench}}
mkdir -p "$OUT" "$W"
source launch/env.sh
R=${R1DIST_BIN:-./build-gpu/r1dist}

# preset_model PRESET DIR: DIR holds the preset with seeded random bf16 weights and the R1
# tokenizer (written unless it is there already). INIT_DEVICE (default cuda): where
# init-model draws the weights (the CPU takes minutes at 14B).
preset_model() {
  [ -f "$2/config.json" ] || $R init-model --preset "$1" --dtype bf16 --seed 1 --device "${INIT_DEVICE:-cuda}" \
    --out "$2" --tokenizer .deps/tokenizer-r1 > /dev/null
}

# long_rows FILE COUNT REPEAT: COUNT rows, each joining 8 bundled sample rows with their
# reasoning repeated REPEAT times (the text repeats, which does not matter for throughput or
# memory): REPEAT 2 gives rows over 2048 tokens, 8 over 8192.
long_rows() {
  python3 - "$@" <<'PY'
import json, sys
out, count, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open("data/sample_zh.jsonl", encoding="utf-8") if l.strip()]
with open(out, "w", encoding="utf-8") as f:
    for i in range(count):
        part = [rows[(i * 8 + j) % len(rows)] for j in range(8)]
        f.write(json.dumps({"Question": part[0]["Question"],
                            "Complex_CoT": "\n".join(p["Complex_CoT"] for p in part) * repeat,
                            "Response": "\n".join(p["Response"] for p in part)}, ensure_ascii=False) + "\n")
PY
}
