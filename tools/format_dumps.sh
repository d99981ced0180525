#!/usr/bin/env bash
# Regenerates the h5dump listings and the column table in docs/METRICS_FORMAT.md and
# docs/CHECKPOINT_FORMAT.md from a tiny run: the tiny preset (2 layers, LoRA on q_proj only,
# so the listings stay short), 4 steps on the CPU, an evaluation and a checkpoint every 2
# steps, the final evaluation with one generation. Each listing replaces the text between
# its <!-- BEGIN generated: NAME --> and <!-- END generated: NAME --> markers.
#   bash tools/format_dumps.sh [BUILD_DIR]      (default build/; needs h5dump and python3)
# Run it after a change of either format and commit the docs it rewrites.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
R="$BUILD/r1dist"
[ -x "$R" ] || { echo "format_dumps: no $R (build it first: bash tools/build.sh)" >&2; exit 2; }
command -v h5dump >/dev/null || { echo "format_dumps: h5dump is not installed (apt-get install hdf5-tools)" >&2; exit 2; }
TOK=.deps/tokenizer-r1
[ -f "$TOK/tokenizer.json" ] || { echo "format_dumps: no $TOK (run tools/install-deps.sh)" >&2; exit 2; }
W=$(mktemp -d /tmp/r1dist-format-dumps.XXXXXX)
trap 'rm -rf "$W"' EXIT

"$R" init-model --preset tiny --dtype fp32 --seed 1 --out "$W/tiny" --tokenizer "$TOK" >/dev/null 2>"$W/init.log" ||
  { cat "$W/init.log" >&2; exit 1; }
cat >"$W/run.toml" <<EOF
[model]
path = "$W/tiny"
dtype = "fp32"
device = "cpu"
[lora]
r = 4
alpha = 8
targets = ["q_proj"]
[data]
path = "data/sample_zh.jsonl"
max_seq_len = 64
eval_rows = 2
threads = 1
train_on_prompt = true
[train]
steps = 4
micro_batch = 1
grad_accum = 1
warmup_steps = 1
[eval]
every_steps = 2
kl_rows = 1
suite = true
prompts = ["What causes anemia?"]
max_new_tokens = 4
[output]
dir = "$W/run"
save_every = 2
keep = 1
EOF
"$R" --cfg "$W/run.toml" >"$W/run.log" 2>&1 || { cat "$W/run.log" >&2; exit 1; }
RUN="$W/run"
CKPT="$RUN/checkpoints/step_00000004.h5"
# The temporary directory's name changes each time: print it as RUN_DIR.
tidy() { sed -e "s|$W/run|RUN_DIR|g" -e "s|$W|TMP|g"; }
{
  echo '```'
  # /eval is listed on its own below.
  (cd "$RUN" && h5dump -H metrics.h5) | tidy | awk '/^   GROUP "eval" \{/ { skip = 1 } !skip { print } skip && /^   \}/ { skip = 0 }'
  echo '```'
} >"$W/metrics_header.txt"
{
  echo '```'
  (cd "$RUN" && h5dump -A -g /eval/generations metrics.h5) | tidy
  echo '```'
} >"$W/metrics_generations.txt"
{
  echo "| table | column | unit | meaning |"
  echo "|---|---|---|---|"
  "$R" metrics "$RUN/metrics.h5" --table columns | tail -n +2 |
    awk -F'\t' '{ gsub(/\|/, "\\|", $4); printf "| %s | `%s` | %s | %s |\n", $1, $2, $3, $4 }'
} >"$W/metrics_columns.txt"
{
  echo '```'
  (cd "$RUN" && h5dump -H checkpoints/step_00000004.h5) | tidy
  echo '```'
} >"$W/checkpoint_header.txt"
{
  echo '```'
  (cd "$RUN" && h5dump -d /optimizer/layout checkpoints/step_00000004.h5) | tidy
  echo '```'
} >"$W/checkpoint_layout.txt"
[ -f "$CKPT" ] || { echo "format_dumps: the run wrote no $CKPT" >&2; exit 1; }

python3 - "$W" <<'EOF'
import re, sys
w = sys.argv[1]
parts = {
    "docs/METRICS_FORMAT.md": ["metrics_header", "metrics_generations", "metrics_columns"],
    "docs/CHECKPOINT_FORMAT.md": ["checkpoint_header", "checkpoint_layout"],
}
for doc, names in parts.items():
    text = open(doc, encoding="utf-8").read()
    for name in names:
        body = open(f"{w}/{name}.txt", encoding="utf-8").read().rstrip("\n")
        pat = re.compile(rf"(<!-- BEGIN generated: {name} -->\n).*?(\n<!-- END generated: {name} -->)", re.S)
        if not pat.search(text):
            sys.exit(f"format_dumps: {doc} has no markers for {name}")
        text = pat.sub(lambda m: m.group(1) + body + m.group(2), text)
    open(doc, "w", encoding="utf-8").write(text)
    print(f"format_dumps: rewrote {doc} ({', '.join(names)})")
EOF
