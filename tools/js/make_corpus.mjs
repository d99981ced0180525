// Writes the tokenizer parity corpus: one JSON string per line. Deterministic (seeded
// PRNG), so the C++ tests, the benchmark and the HF script on the GPU machine all see the
// same texts.
//
// usage: node tools/js/make_corpus.mjs DATA.json CASES.jsonl TOKENIZER_DIR OUT.jsonl
//   DATA.json      rows with Question, Complex_CoT, Response (../shared/data/medical_o1_sample_en.json)
//   CASES.jsonl    hand-written cases (tests/fixtures/tokenizer/cases.jsonl)
//   TOKENIZER_DIR  its added tokens are embedded in texts
//
// Kept out on purpose: U+0085, U+FEFF and U+017F, where the JavaScript reference differs
// from HF tokenizers (docs/TOKENIZER.md); tests/core/test_tokenizer_reference.cpp covers them.
import fs from "node:fs";
import path from "node:path";

const [dataPath, casesPath, tokDir, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node make_corpus.mjs DATA.json CASES.jsonl TOKENIZER_DIR OUT.jsonl");
  process.exit(2);
}
const rows = JSON.parse(fs.readFileSync(dataPath, "utf8"));
const cases = fs.readFileSync(casesPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const added = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8")).added_tokens.map((t) => t.content);
const find = (re) => added.find((t) => re.test(t)) ?? "";
const BOS = find(/begin/), EOS = find(/end.of.sentence/), USER = find(/User/), ASSISTANT = find(/Assistant/);

let seed = 3407;
const rand = () => {  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

const texts = [];
const PREAMBLE = "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\nBefore answering, think carefully about the question " +
  "and create a step-by-step chain of thoughts to ensure a logical and accurate response.\n\n" +
  "### Instruction:\nYou are a medical expert with advanced knowledge in clinical reasoning, diagnostics, and " +
  "treatment planning. Please answer the following medical question.\n\n";

// 1. every row: the three fields separately, together (the training recipe), the
//    chat-template rendering, and the multiple-choice question with its options
for (const r of rows) {
  texts.push(r.Question, r.Complex_CoT, r.Response);
  texts.push(`${PREAMBLE}### Question:\n${r.Question}\n\n### Response:\n<think>\n${r.Complex_CoT}\n</think>\n${r.Response}${EOS}`);
  texts.push(`${BOS}${USER}${r.Question}${ASSISTANT}<think>\n${r.Complex_CoT}\n</think>\n\n${r.Response}${EOS}`);
  if (r.question && r.options)
    texts.push(r.question + "\n" + Object.entries(r.options).map(([k, v]) => `${k}. ${v}`).join("\n") + `\nAnswer: ${r.answer_idx}`);
}
// 2. the hand-written cases
texts.push(...cases);
// 3. every added token embedded in text
for (const t of added) {
  texts.push(t, `a${t}b`, ` ${t} `, `${t}${t}`, `x\n${t}\nthe end`, `中文${t}中文`, t.slice(0, -1),
             `<${t}>`, `DON'T${t}'S`, `  ${t}\r\n\t${t}1234`);
}
// 4. random mixtures (no combining mark right after an added token: NFC would compose it
//    into the token's last character in the NFC text but not in the tokenizers' output)
const ranges = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0xa0, 0xff], [0x100, 0x17e], [0x391, 0x3c9], [0x410, 0x44f],
  [0x5d0, 0x5ea], [0x621, 0x64a], [0x905, 0x939], [0xe01, 0xe2e], [0xac00, 0xd7a3], [0x4e00, 0x9fa5],
  [0x4e00, 0x9fa5], [0x3041, 0x3096], [0x30a1, 0x30fa], [0x300, 0x36f], [0x1f600, 0x1f64f],
  [0x1f300, 0x1f5ff], [0x1d400, 0x1d433], [0x20000, 0x2a6d6], [0xff01, 0xff5e], [0x2500, 0x257f],
  [0x2010, 0x2027], [0x2190, 0x21ff], [0xe000, 0xe0ff], [0x30, 0x39], [0x660, 0x669], [0x2160, 0x217f],
];
const spaces = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\n\n", "   \n  ", "\u00a0", "\u3000", "\u2028", "\u000b", "\u000c", " \t"];
const contractions = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D"];
const corpusChars = rows.map((r) => Array.from(r.Question + " " + r.Complex_CoT)).concat(cases.map((c) => Array.from(c)));
const fragment = () => {
  switch (int(0, 7)) {
    case 0: case 1: {
      const cs = pick(corpusChars);
      const a = int(0, Math.max(0, cs.length - 1));
      return cs.slice(a, a + int(1, 60)).join("");
    }
    case 2: {
      const [lo, hi] = pick(ranges);
      let s = "";
      for (let k = int(1, 12); k > 0; --k) s += String.fromCodePoint(int(lo, hi));
      return s;
    }
    case 3: return pick(spaces).repeat(int(1, 4));
    case 4: return pick(["I", "WE", "you", "They", "it", "SHE", "x"]) + pick(contractions);
    case 5: return Array.from({ length: int(1, 40) }, () => String(int(0, 9))).join("");
    case 6: return rand() < 0.5 ? pick(added) : pick(["<", ">", "|", "｜", "▁", "<|", "|>", "'"]);
    default: return pick(["Hello", "world", "the", "患者", "头晕", "mg/dL", "→", "…", "😀", "e\u0301", "A\u030a"]);
  }
};
for (let i = 0; i < 1300; ++i) {
  let s = "";
  for (let k = int(1, 24); k > 0; --k) {
    let f = fragment();
    if (added.some((t) => s.endsWith(t))) f = f.replace(/^[\u0300-\u036f]+/u, "");
    s += f;
  }
  texts.push(s);
}

const banned = /[\u0085\ufeff\u017f]/u;
const kept = texts.filter((t) => !banned.test(t));
fs.writeFileSync(outPath, kept.map((t) => JSON.stringify(t)).join("\n") + "\n");
const bytes = kept.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
console.log(`make_corpus: ${kept.length} texts, ${bytes} bytes -> ${outPath}`);
