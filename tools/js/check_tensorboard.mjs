// An independent reader of r1dist's TensorBoard event files, for the end-to-end tests: its
// own TFRecord framing and CRC-32C check, and protobufjs decoding with TensorFlow's schema
// written out below (not r1dist's .proto), compared with `r1dist metrics` (TSV).
//
//   node check_tensorboard.mjs TB_DIR METRICS.tsv
//       TB_DIR: output.dir/tensorboard; METRICS.tsv: what `r1dist metrics RUN/metrics.h5`
//       printed, and where the run has a final evaluation a "# eval" line followed by what
//       `r1dist metrics RUN/metrics.h5 --table eval` printed. Checks: every file starts with
//       the file version "brain.Event:2"; every record's CRCs hold and no record is cut
//       short; each tag is train/<column of steps>, eval/<column of evals> or
//       suite/<name in eval>; each tag's (step, value) series, read across the files in name
//       order, equals its column (values as float32), so no step appears twice and none goes
//       back; a suite/ tag is one event at the last step. Prints one line per series; exits 1
//       naming the first difference.
import fs from "node:fs";
import path from "node:path";
import protobuf from "protobufjs";

// tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto, the fields
// that scalars use.
const SCHEMA = `
syntax = "proto3";
message SummaryValue {
  string node_name = 7;
  string tag = 1;
  oneof value {
    float simple_value = 2;
    bytes obsolete_old_style_histogram = 3;
  }
}
message Summary { repeated SummaryValue value = 1; }
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    bytes graph_def = 4;
    Summary summary = 5;
  }
}`;
const Event = protobuf.parse(SCHEMA, { keepCase: true }).root.lookupType("Event");

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; ++i) {
    let c = i;
    for (let k = 0; k < 8; ++k) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();
function crc32c(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function masked(buf) {
  const c = crc32c(buf);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}
if (crc32c(Buffer.from("123456789")) !== 0xe3069283) throw new Error("CRC-32C self-check failed");

function fail(msg) {
  console.error("check_tensorboard: " + msg);
  process.exit(1);
}

function records(file) {
  const b = fs.readFileSync(file);
  const out = [];
  for (let at = 0; at < b.length; ) {
    if (b.length - at < 12) fail(`${file}: record cut short at byte ${at}`);
    const len = Number(b.readBigUInt64LE(at));
    if (b.readUInt32LE(at + 8) !== masked(b.subarray(at, at + 8))) fail(`${file}: length CRC at byte ${at}`);
    if (b.length - at < 16 + len) fail(`${file}: record cut short at byte ${at}`);
    const data = b.subarray(at + 12, at + 12 + len);
    if (b.readUInt32LE(at + 12 + len) !== masked(data)) fail(`${file}: data CRC at byte ${at}`);
    out.push(Event.toObject(Event.decode(data), { longs: Number, oneofs: true }));
    at += 16 + len;
  }
  return out;
}

// `r1dist metrics` TSV: "# steps" / "# evals" / "# attrs" sections, each a header row and rows.
function tables(tsv) {
  const t = {};
  let name = null, header = null;
  for (const line of tsv.split("\n")) {
    if (line.startsWith("# ")) { name = line.slice(2); header = null; t[name] = []; continue; }
    if (!line || !name) continue;
    const f = line.split("\t");
    if (!header) { header = f; continue; }
    t[name].push(Object.fromEntries(header.map((h, i) => [h, f[i]])));
  }
  return t;
}

const [dir, tsvPath] = process.argv.slice(2);
if (!dir || !tsvPath) fail("usage: node check_tensorboard.mjs TB_DIR METRICS.tsv");
const files = fs.readdirSync(dir).filter((n) => n.includes("tfevents")).sort();
if (files.length === 0) fail(`${dir}: no event files`);
const series = new Map();  // tag -> [[step, value]]
for (const name of files) {
  const evs = records(path.join(dir, name));
  if (evs.length === 0 || evs[0].file_version !== "brain.Event:2")
    fail(`${name}: does not start with the file version brain.Event:2`);
  for (const e of evs.slice(1)) {
    if (e.what !== "summary") fail(`${name}: an event that is not a summary at step ${e.step}`);
    for (const v of e.summary.value || []) {
      if (v.value !== "simple_value") fail(`${name}: ${v.tag} at step ${e.step} has no simple_value`);
      if (!series.has(v.tag)) series.set(v.tag, []);
      series.get(v.tag).push([e.step ?? 0, v.simple_value]);
    }
  }
}

const t = tables(fs.readFileSync(tsvPath, "utf8"));
const expected = new Map();
const lastStep = Math.max(0, ...(t.steps || []).map((r) => Number(r.step)));
for (const row of t.eval || []) expected.set(`suite/${row.name}`, [[lastStep, Math.fround(Number(row.value))]]);
for (const [table, group] of [["steps", "train"], ["evals", "eval"]]) {
  if (!t[table]) fail(`${tsvPath}: no "# ${table}" table`);
  for (const row of t[table])
    for (const [col, text] of Object.entries(row)) {
      if (col === "step") continue;
      const tag = `${group}/${col}`;
      if (!expected.has(tag)) expected.set(tag, []);
      expected.get(tag).push([Number(row.step), Math.fround(Number(text))]);
    }
}
for (const tag of series.keys()) if (!expected.has(tag)) fail(`tag ${tag} is no column of metrics.h5`);
for (const [tag, want] of expected) {
  const got = series.get(tag) || [];
  if (got.length !== want.length)
    fail(`${tag}: ${got.length} events, metrics.h5 has ${want.length} rows (steps ${got.map((s) => s[0])} vs ${want.map((s) => s[0])})`);
  for (let i = 0; i < want.length; ++i) {
    const [gs, gv] = got[i], [ws, wv] = want[i];
    // The TSV prints 9 significant digits: the float32 of it may differ from the float32 of
    // the double in the last place.
    const tol = Math.abs(wv) * 2 ** -22;
    if (gs !== ws || Math.abs(gv - wv) > tol) fail(`${tag}: event ${i} is step ${gs} = ${gv}, metrics.h5 has step ${ws} = ${wv}`);
  }
  console.log(`${tag}\t${got.length}`);
}
console.log(`check_tensorboard: ${expected.size} series in ${files.length} file(s) equal metrics.h5`);
