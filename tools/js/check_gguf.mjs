// Checks GGUF files written by `r1dist export` against the HF model directory they stand for
// (written by `r1dist merge --out-dtype fp32` with the same adapter), with a reader of its own:
// @huggingface/gguf parses the header; this script reads the tensor data by offset, decodes
// F32 / F16 / BF16 / Q8_0 itself and compares every value with the safetensors, parsed here
// too. It checks
//   - the metadata llama.cpp needs for a Qwen2 model against config.json, and the embedded
//     tokenizer against tokenizer.json and tokenizer_config.json (every token, type, merge,
//     special id, the chat template);
//   - that the tensors cover every HF tensor exactly once under llama.cpp's names, with the
//     shape reversed (GGUF lists the innermost dimension first) and the expected type;
//   - every value within the type's error: F32 exact; BF16 and F16 within half a unit in the
//     last place; Q8_0 within half the block's scale (plus what the fp16 rounding of the scale
//     adds), the scale being max|x| / 127 of the block;
//   - that the file is the aligned header plus each tensor's data padded to the alignment.
// Prints, per file, the metadata, every tensor and a summary; exits 1 listing every failure.
//
//   node tools/js/check_gguf.mjs --hf DIR FILE.gguf:TYPE ...     (TYPE: bf16, f16, q8_0, f32)
import fs from "node:fs";
import path from "node:path";
import { gguf } from "@huggingface/gguf";

const args = { files: [] };
for (let i = 2; i < process.argv.length; ++i) {
  if (process.argv[i] === "--hf") args.hf = process.argv[++i];
  else args.files.push(process.argv[i]);
}
if (!args.hf || !args.files.length || args.files.some((f) => !/:(bf16|f16|q8_0|f32)$/.test(f))) {
  console.error("usage: node check_gguf.mjs --hf DIR FILE.gguf:TYPE ... (TYPE: bf16, f16, q8_0 or f32)");
  process.exit(2);
}

const failures = [];
let current = "";  // the file being checked, named in each failure
const fail = (msg) => {
  if (failures.length < 50) failures.push(`${current}: ${msg}`);
  else if (failures.length === 50) failures.push("(more failures not listed)");
};
const expectEq = (what, got, want) => {
  if (got !== want) fail(`${what}: ${JSON.stringify(got)} != expected ${JSON.stringify(want)}`);
};
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// ---- the HF side -----------------------------------------------------------------------
const config = readJson(path.join(args.hf, "config.json"));
const tokJson = readJson(path.join(args.hf, "tokenizer.json"));
const tokCfgPath = path.join(args.hf, "tokenizer_config.json");
const tokCfg = fs.existsSync(tokCfgPath) ? readJson(tokCfgPath) : {};

// safetensors: 8-byte little-endian header length, JSON header, data.
function openSafetensors(file) {
  const fd = fs.openSync(file, "r");
  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const n = Number(lenBuf.readBigUInt64LE(0));
  const hb = Buffer.alloc(n);
  fs.readSync(fd, hb, 0, n, 8);
  const header = JSON.parse(hb.toString("utf8"));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    tensors[name] = { file, fd, dtype: t.dtype, shape: t.shape, begin: 8 + n + t.data_offsets[0], end: 8 + n + t.data_offsets[1] };
  }
  return tensors;
}
let hf = {};
const index = path.join(args.hf, "model.safetensors.index.json");
if (fs.existsSync(index)) {
  for (const f of new Set(Object.values(readJson(index).weight_map))) Object.assign(hf, openSafetensors(path.join(args.hf, f)));
} else {
  hf = openSafetensors(path.join(args.hf, "model.safetensors"));
}
function hfValues(t) {
  if (t.dtype !== "F32") throw new Error(`${t.file}: the reference must be F32 (r1dist merge --out-dtype fp32), found ${t.dtype}`);
  const buf = Buffer.alloc(t.end - t.begin);
  fs.readSync(t.fd, buf, 0, buf.length, t.begin);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
}

// llama.cpp's tensor names for Qwen2 (its gguf-py tensor map), written out independently of r1dist's table.
function ggufName(hfName) {
  const outer = { "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight" };
  if (outer[hfName]) return outer[hfName];
  const m = hfName.match(/^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/);
  if (!m) return null;
  const mod = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
  }[m[2]];
  return mod ? `blk.${m[1]}.${mod}.${m[3]}` : null;
}

// ---- the GGUF side -----------------------------------------------------------------------
const T = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 };
const typeName = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k]));
const fileTypes = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

async function checkFile(file, type) {
  current = file;
  const wantType = { f32: T.F32, f16: T.F16, q8_0: T.Q8_0, bf16: T.BF16 }[type];
  const parsed = await gguf(path.resolve(file), { allowLocalFile: true, typedMetadata: true });
  const md = parsed.typedMetadata;
  const val = (k) => (md[k] === undefined ? undefined : md[k].value);
  const typed = (k, type) => {
    if (md[k] === undefined) fail(`metadata ${k} is missing`);
    else if (md[k].type !== type) fail(`metadata ${k} has value type ${md[k].type}, expected ${type}`);
  };
  const U32 = 4, I32 = 5, F32V = 6, BOOL = 7, STR = 8, ARR = 9;

  // Metadata: the architecture.
  expectEq("version", val("version"), 3);
  expectEq("general.architecture", val("general.architecture"), "qwen2");
  typed("general.name", STR);
  typed("general.file_type", U32);
  expectEq("general.file_type", val("general.file_type"), fileTypes[type]);
  expectEq("general.alignment", val("general.alignment"), 32);
  const ropeTheta = config.rope_theta ?? config.rope_parameters?.rope_theta ?? 10000;
  const arch = {
    "qwen2.block_count": config.num_hidden_layers,
    // config.json's, else the tokenizer's model_max_length (r1dist export's rule).
    "qwen2.context_length": config.max_position_embeddings ?? tokCfg.model_max_length,
    "qwen2.embedding_length": config.hidden_size,
    "qwen2.feed_forward_length": config.intermediate_size,
    "qwen2.attention.head_count": config.num_attention_heads,
    "qwen2.attention.head_count_kv": config.num_key_value_heads,
  };
  for (const [k, v] of Object.entries(arch)) {
    typed(k, U32);
    expectEq(k, val(k), v);
  }
  typed("qwen2.rope.freq_base", F32V);
  expectEq("qwen2.rope.freq_base", val("qwen2.rope.freq_base"), Math.fround(ropeTheta));
  typed("qwen2.attention.layer_norm_rms_epsilon", F32V);
  expectEq("qwen2.attention.layer_norm_rms_epsilon", val("qwen2.attention.layer_norm_rms_epsilon"), Math.fround(config.rms_norm_eps));

  // Metadata: the tokenizer, entry by entry against tokenizer.json.
  expectEq("tokenizer.ggml.model", val("tokenizer.ggml.model"), "gpt2");
  expectEq("tokenizer.ggml.pre", val("tokenizer.ggml.pre"), "deepseek-r1-qwen");
  const tokens = val("tokenizer.ggml.tokens") ?? [];
  const types = val("tokenizer.ggml.token_type") ?? [];
  if (md["tokenizer.ggml.token_type"]?.subType !== I32) fail("tokenizer.ggml.token_type is not an array of INT32");
  expectEq("tokens", tokens.length, config.vocab_size);
  expectEq("token types", types.length, config.vocab_size);
  const wantTok = new Array(config.vocab_size).fill(null);
  const wantTypes = new Array(config.vocab_size).fill(5);
  for (const [t, id] of Object.entries(tokJson.model.vocab)) {
    wantTok[id] = t;
    wantTypes[id] = 1;
  }
  const looksSpecial = (t) =>
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) || (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<｜") && t.endsWith("｜>")) || (t.startsWith("<unused") && t.endsWith(">"));
  for (const a of tokJson.added_tokens ?? []) {
    const control = a.special || looksSpecial(a.content);
    wantTok[a.id] = control ? a.content : a.content.replaceAll("\u2581", " ");
    wantTypes[a.id] = control ? 3 : 4;
  }
  let tokenMismatches = 0;
  for (let id = 0; id < config.vocab_size; ++id) {
    const want = wantTok[id] ?? `[PAD${id}]`;
    if (tokens[id] !== want || types[id] !== wantTypes[id]) {
      if (++tokenMismatches <= 5) fail(`token ${id}: ${JSON.stringify(tokens[id])} type ${types[id]}, expected ${JSON.stringify(want)} type ${wantTypes[id]}`);
    }
  }
  const typeCount = {};
  for (const t of types) typeCount[t] = (typeCount[t] ?? 0) + 1;
  const merges = val("tokenizer.ggml.merges") ?? [];
  const wantMerges = tokJson.model.merges.map((m) => (typeof m === "string" ? m : m.map((p) => p.replaceAll(" ", "\u0120")).join(" ")));
  expectEq("merges", merges.length, wantMerges.length);
  let mergeMismatches = 0;
  for (let i = 0; i < wantMerges.length; ++i)
    if (merges[i] !== wantMerges[i] && ++mergeMismatches <= 3) fail(`merge ${i}: ${JSON.stringify(merges[i])} != ${JSON.stringify(wantMerges[i])}`);
  const idOf = (entry) => {
    const content = typeof entry === "string" ? entry : entry?.content;
    if (content === undefined || content === null) return undefined;
    const added = (tokJson.added_tokens ?? []).find((a) => a.content === content);
    return added ? added.id : tokJson.model.vocab[content];
  };
  for (const [key, cfgKey] of [["bos_token_id", "bos_token"], ["eos_token_id", "eos_token"], ["padding_token_id", "pad_token"]]) {
    const want = idOf(tokCfg[cfgKey]);
    if (want === undefined) continue;
    typed(`tokenizer.ggml.${key}`, U32);
    expectEq(`tokenizer.ggml.${key}`, val(`tokenizer.ggml.${key}`), want);
  }
  for (const k of ["add_bos_token", "add_eos_token"]) {
    typed(`tokenizer.ggml.${k}`, BOOL);
    if (typeof tokCfg[k] === "boolean") expectEq(`tokenizer.ggml.${k}`, val(`tokenizer.ggml.${k}`), tokCfg[k]);
  }
  if (typeof tokCfg.chat_template === "string") expectEq("tokenizer.chat_template", val("tokenizer.chat_template"), tokCfg.chat_template);

  // ---- tensors ----------------------------------------------------------------------------
  const align = (n) => Math.ceil(n / 32) * 32;
  const nbytesOf = (type, numel) => ({ [T.F32]: 4 * numel, [T.F16]: 2 * numel, [T.BF16]: 2 * numel, [T.Q8_0]: (numel / 32) * 34 })[type];
  const byGguf = new Map(parsed.tensorInfos.map((t) => [t.name, t]));
  expectEq("tensor count", parsed.tensorInfos.length, Object.keys(hf).length);
  if (byGguf.size !== parsed.tensorInfos.length) fail("a GGUF tensor name appears twice");
  const covered = new Set();
  for (const name of Object.keys(hf)) {
    const g = ggufName(name);
    if (!g) fail(`HF tensor ${name} has no llama.cpp name`);
    else if (!byGguf.has(g)) fail(`HF tensor ${name} is missing (expected GGUF tensor ${g})`);
    else if (covered.has(g)) fail(`GGUF tensor ${g} covers two HF tensors`);
    else covered.add(g);
  }
  for (const t of parsed.tensorInfos) if (!covered.has(t.name)) fail(`GGUF tensor ${t.name} stands for no HF tensor`);
  if (config.tie_word_embeddings && byGguf.has("output.weight")) fail("output.weight is written although the embeddings are tied");

  const dataStart = Number(parsed.tensorDataOffset);
  if (dataStart % 32 !== 0) fail(`the tensor data starts at ${dataStart}, not a multiple of 32`);
  const fd = fs.openSync(file, "r");
  const f16 = (h) => {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1024 + m) * 2 ** (e - 25);
  };
  const F16 = new Float32Array(65536);  // every half-precision value, decoded
  for (let h = 0; h < 65536; ++h) F16[h] = f16(h);
  const stats = {};
  let expectedOffset = 0;
  const listing = [];
  // One tensor: name, shape, type, offset, and every value against the reference (in a
  // function: V8 optimises loops there far better than at a module's top level).
  function checkTensor(t) {
    const hfName = Object.keys(hf).find((n) => ggufName(n) === t.name);
    if (!hfName) return;
    const ref = hf[hfName];
    const shape = t.shape.map(Number);
    listing.push(`  ${t.name.padEnd(28)} ${typeName[t.dtype] ?? t.dtype}  [${shape.join(", ")}]  <- ${hfName} [${ref.shape.join(", ")}]`);
    expectEq(`${t.name} shape (GGUF order)`, JSON.stringify(shape), JSON.stringify([...ref.shape].reverse()));
    const oneD = ref.shape.length === 1 || t.name.endsWith("_norm.weight") || !t.name.endsWith(".weight");
    const want = oneD ? T.F32 : wantType === T.Q8_0 && shape[0] % 32 !== 0 ? T.F16 : wantType;
    expectEq(`${t.name} type`, typeName[t.dtype], typeName[want]);
    expectEq(`${t.name} offset`, Number(t.offset), expectedOffset);
    const numel = shape.reduce((a, b) => a * b, 1);
    const nbytes = nbytesOf(t.dtype, numel);
    if (nbytes === undefined) {
      fail(`${t.name}: type ${t.dtype} cannot be decoded here`);
      return;
    }
    expectedOffset = Number(t.offset) + align(nbytes);
    const buf = Buffer.alloc(nbytes);
    fs.readSync(fd, buf, 0, nbytes, dataStart + Number(t.offset));
    const x = hfValues(ref);
    const s = (stats[typeName[t.dtype]] ??= { tensors: 0, values: 0, maxAbs: 0, maxRel: 0, maxOverScale: 0, exact: 0 });
    s.tensors++;
    s.values += numel;
    // Decode the whole tensor, and for each value the error bound of its type.
    const got = new Float32Array(numel);
    const bound = new Float64Array(numel);
    if (t.dtype === T.F32) {
      got.set(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + nbytes)));
    } else if (t.dtype === T.BF16 || t.dtype === T.F16) {
      const h = new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + nbytes));
      if (t.dtype === T.BF16) {
        const u = new Uint32Array(got.buffer);
        for (let i = 0; i < numel; ++i) u[i] = h[i] << 16;
      } else {
        for (let i = 0; i < numel; ++i) got[i] = F16[h[i]];
      }
      // half an ulp: at most 2^-8 (bf16) / 2^-11 (f16) of |x|; below the normal range the ulp
      // is fixed (f16: 2^-24, bf16: 2^-133)
      const rel = t.dtype === T.BF16 ? 2 ** -8 : 2 ** -11;
      const floor = t.dtype === T.BF16 ? 2 ** -134 : 2 ** -25;
      for (let i = 0; i < numel; ++i) bound[i] = Math.max(rel * Math.abs(x[i]), floor);
    } else {
      for (let b = 0; b < numel / 32; ++b) {
        const d = F16[buf.readUInt16LE(34 * b)];
        let amax = 0;
        for (let j = 0; j < 32; ++j) amax = Math.max(amax, Math.abs(x[32 * b + j]));
        const d32 = Math.fround(amax / 127);
        if (Math.abs(d - d32) > Math.max(2 ** -11 * d32, 2 ** -25)) fail(`${t.name} block ${b}: scale ${d}, expected fp16(${d32})`);
        // q = round(x / d32), stored q * d: |error| <= d32 / 2 + 127 |d - d32| (+ float rounding)
        const bq = d32 / 2 + 127 * Math.abs(d - d32) + 1e-6 * d32;
        for (let j = 0; j < 32; ++j) {
          got[32 * b + j] = buf.readInt8(34 * b + 2 + j) * d;
          bound[32 * b + j] = bq;
          if (d32 > 0) s.maxOverScale = Math.max(s.maxOverScale, Math.abs(got[32 * b + j] - x[32 * b + j]) / d32);
        }
      }
    }
    let bad = 0;
    for (let i = 0; i < numel; ++i) {
      const err = Math.abs(got[i] - x[i]);
      if (err === 0) s.exact++;
      if (err > s.maxAbs) s.maxAbs = err;
      if (x[i] !== 0 && err / Math.abs(x[i]) > s.maxRel) s.maxRel = err / Math.abs(x[i]);
      if (!(err <= bound[i]) && ++bad <= 3) fail(`${t.name}[${i}]: ${got[i]} vs ${x[i]} (error ${err} > ${bound[i]})`);
    }
  }
  for (const t of [...parsed.tensorInfos].sort((a, b) => Number(a.offset - b.offset))) checkTensor(t);
  const size = fs.fstatSync(fd).size;
  expectEq("file size (aligned header + aligned tensor data)", size, dataStart + expectedOffset);

  // ---- report -------------------------------------------------------------------------------
  const show = (v) => {
    if (v.type === ARR) return `[${v.value.length} x type ${v.subType}]`;
    if (typeof v.value === "string") return JSON.stringify(v.value.length > 60 ? v.value.slice(0, 57) + "..." : v.value);
    return String(v.value);
  };
  console.log(`${file}: GGUF v${val("version")}, ${size} bytes (header ${dataStart}), ${parsed.tensorInfos.length} tensors`);
  console.log("metadata:");
  for (const [k, v] of Object.entries(md)) if (!["version", "tensor_count", "kv_count"].includes(k)) console.log(`  ${k} = ${show(v)}`);
  console.log(`token types: ${Object.entries(typeCount).map(([t, n]) => `${n} x ${t}`).join(", ")}`);
  console.log("tensors:");
  for (const line of listing) console.log(line);
  for (const [ty, s] of Object.entries(stats))
    console.log(`${ty}: ${s.tensors} tensors, ${s.values} values, ${s.exact} exact, max |error| ${s.maxAbs.toExponential(3)}, ` +
      `max relative ${s.maxRel.toExponential(3)}` + (ty === "Q8_0" ? `, max |error| / scale ${s.maxOverScale.toFixed(4)}` : ""));
}

for (const arg of args.files) {
  const sep = arg.lastIndexOf(":");
  await checkFile(arg.slice(0, sep), arg.slice(sep + 1));
}
if (failures.length) {
  console.error(`FAILED (${failures.length}):\n  ` + failures.join("\n  "));
  process.exit(1);
}
console.log(`OK: ${args.files.join(", ")} match ${args.hf}`);
