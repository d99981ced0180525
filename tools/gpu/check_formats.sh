#!/usr/bin/env bash
# On the GPU machine, after a build into build-gpu (tools/gpu/build_and_test.sh): the files a
# run leaves, read by the reference tools installed there. Results in $OUT.
#   1. TensorBoard: a tiny run on CUDA with --tensorboard, killed after step 7 and resumed
#      from step 5; TensorBoard's EventAccumulator reads the events and every series must
#      equal `r1dist metrics` (tools/reference/check_tensorboard.py), each step once.
#   2. Portable adapter: the run's adapter (model.hub_id set) and its base copied elsewhere
#      under other names load with PEFT's PeftModel.from_pretrained and give the log-probs of
#      r1dist merge + score (tools/reference/check_portable_adapter.py).
#   3. GGUF: the model with that adapter exported as bf16, f16 and q8_0; gguf-py's reader and
#      transformers' GGUF loader against the merged model, where the gguf package exists
#      (tools/reference/check_gguf_transformers.py; exit 3: not installed).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/lib.sh /tmp/r1dist-formats
T=$W
rm -rf "$T/run" "$T/tiny" "$T/gguf" "$T/merged"
$R init-model --preset tiny --dtype fp32 --seed 1 --out "$T/tiny" --tokenizer .deps/tokenizer-r1 >/dev/null
cat > "$T/run.toml" <<TOML
[model]
path = "$T/tiny"
dtype = "fp32"
device = "cuda"
hub_id = "r1dist-test/tiny-qwen2"
[lora]
r = 8
alpha = 16
[data]
path = "data/sample_zh.jsonl"
max_seq_len = 96
eval_rows = 4
train_on_prompt = true
[train]
lr = 2e-3
steps = 10
warmup_steps = 2
[eval]
every_steps = 5
kl_rows = 2
suite = true
max_new_tokens = 8
[output]
dir = "$T/run"
save_every = 5
TOML
R1DIST_FAULT=kill:rank=0:step=7 $R train --cfg "$T/run.toml" --tensorboard > "$OUT/tb_killed.log" 2>&1
echo "killed run: exit $? (137 expected)" | tee "$OUT/formats.txt"
$R train --cfg "$T/run.toml" --tensorboard --resume auto > "$OUT/tb_resumed.log" 2>&1
echo "resumed run: exit $?" | tee -a "$OUT/formats.txt"
python3 tools/reference/check_tensorboard.py "$T/run" --r1dist "$R" 2>&1 | tee -a "$OUT/formats.txt"
echo "check_tensorboard: exit ${PIPESTATUS[0]}" | tee -a "$OUT/formats.txt"
python3 tools/reference/check_portable_adapter.py --base "$T/tiny" --adapter "$T/run/adapter" --r1dist "$R" 2>&1 |
  tee -a "$OUT/formats.txt"
echo "check_portable_adapter: exit ${PIPESTATUS[0]}" | tee -a "$OUT/formats.txt"
mkdir -p "$T/gguf"
$R merge --model "$T/tiny" --adapter "$T/run/adapter" --out "$T/merged" --out-dtype fp32 > /dev/null 2>&1
for t in bf16 f16 q8_0; do
  $R export --model "$T/tiny" --adapter "$T/run/adapter" --type $t --out "$T/gguf/tiny-$t.gguf" > "$OUT/export_$t.log" 2>&1
  echo "export $t: exit $?, $(stat -c %s "$T/gguf/tiny-$t.gguf") bytes" | tee -a "$OUT/formats.txt"
done
python3 tools/reference/check_gguf_transformers.py --merged "$T/merged" "$T"/gguf/*.gguf 2>&1 | tail -n 5 |
  tee -a "$OUT/formats.txt"
echo "check_gguf_transformers: exit ${PIPESTATUS[0]}" | tee -a "$OUT/formats.txt"
python3 -c "import transformers, peft, tensorboard; print('transformers', transformers.__version__, 'peft', peft.__version__, 'tensorboard', tensorboard.__version__)" | tee -a "$OUT/formats.txt"
