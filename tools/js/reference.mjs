// The JavaScript reference tokenizer (@lenml/tokenizers, an independent implementation of
// the HF tokenizer.json format) driven from the command line, for r1dist's parity tests
// and benchmark. Texts travel as JSON Lines: one JSON string per line.
//
//   node reference.mjs encode  --tokenizer DIR --in TEXTS.jsonl --out OUT.jsonl [--add-special]
//       each output line: {"ids": [...], "nfc": NFC(text), "decoded": decode(ids)}
//   node reference.mjs encode-hex --tokenizer DIR --in HEX.txt --out OUT.jsonl
//       each input line: raw bytes in hex; decoded as UTF-8 the way node does (invalid
//       sequences -> U+FFFD), then encoded; output {"text": ..., "ids": [...]}
//   node reference.mjs decode  --tokenizer DIR --in IDS.jsonl --out OUT.jsonl [--skip-special]
//   node reference.mjs bench   --tokenizer DIR --in TEXTS.jsonl [--repeat K]
//       single-thread encode of every text K times; prints one JSON summary line
//   node reference.mjs classes --out FILE.json
//       code point ranges matching /\p{L}/u, /\p{N}/u and /\s/u in this node
import fs from "node:fs";
import path from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";

function parseArgs(argv) {
  const a = { _: [] };
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i].startsWith("--")) {
      const key = argv[i].slice(2);
      if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) a[key] = argv[++i];
      else a[key] = true;
    } else a._.push(argv[i]);
  }
  return a;
}

function load(dir) {
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const cfgPath = path.join(dir, "tokenizer_config.json");
  const tokenizerConfig = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

function readLines(file) {
  const text = fs.readFileSync(file, "utf8");
  const lines = text.split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

const args = parseArgs(process.argv.slice(2));
const mode = args._[0];
const need = (k) => {
  if (!args[k] || args[k] === true) {
    console.error(`reference.mjs ${mode}: --${k} is required`);
    process.exit(2);
  }
  return args[k];
};

if (mode === "encode") {
  const tok = load(need("tokenizer"));
  const add_special_tokens = !!args["add-special"];
  const out = [];
  for (const line of readLines(need("in"))) {
    const text = JSON.parse(line);
    const ids = tok.encode(text, { add_special_tokens });
    const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    out.push(JSON.stringify({ ids, nfc: text.normalize("NFC"), decoded }));
  }
  fs.writeFileSync(need("out"), out.join("\n") + "\n");
} else if (mode === "encode-hex") {
  const tok = load(need("tokenizer"));
  const out = [];
  for (const line of readLines(need("in"))) {
    const text = Buffer.from(line.trim(), "hex").toString("utf8");
    out.push(JSON.stringify({ text, ids: tok.encode(text, { add_special_tokens: false }) }));
  }
  fs.writeFileSync(need("out"), out.join("\n") + "\n");
} else if (mode === "decode") {
  const tok = load(need("tokenizer"));
  const skip_special_tokens = !!args["skip-special"];
  const out = [];
  for (const line of readLines(need("in"))) {
    const ids = JSON.parse(line);
    out.push(JSON.stringify(ids.length ? tok.decode(ids, { skip_special_tokens }) : ""));
  }
  fs.writeFileSync(need("out"), out.join("\n") + "\n");
} else if (mode === "bench") {
  const tok = load(need("tokenizer"));
  const texts = readLines(need("in")).map((l) => JSON.parse(l));
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
  const repeat = Number(args.repeat ?? 3);
  const seconds = [];
  let tokens = 0;
  for (let r = 0; r < repeat; ++r) {
    const t0 = process.hrtime.bigint();
    tokens = 0;
    for (const t of texts) tokens += tok.encode(t, { add_special_tokens: false }).length;
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const mb = bytes / 1e6;
  console.log(JSON.stringify({
    impl: "@lenml/tokenizers", node: process.version, texts: texts.length, bytes, tokens,
    seconds, mb_per_s_first: mb / seconds[0], mb_per_s_best: mb / Math.min(...seconds),
  }));
} else if (mode === "classes") {
  const classes = { L: /^\p{L}$/u, N: /^\p{N}$/u, s: /^\s$/u };
  const ranges = { unicode: process.versions.unicode, icu: process.versions.icu };
  for (const [name, re] of Object.entries(classes)) {
    const r = [];
    for (let cp = 0; cp <= 0x10ffff; ++cp) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      if (!re.test(String.fromCodePoint(cp))) continue;
      if (r.length && r[r.length - 1][1] === cp - 1) r[r.length - 1][1] = cp;
      else r.push([cp, cp]);
    }
    ranges[name] = r;
  }
  fs.writeFileSync(need("out"), JSON.stringify(ranges));
} else {
  console.error("usage: node reference.mjs encode|encode-hex|decode|bench|classes [options] (see the header)");
  process.exit(2);
}
