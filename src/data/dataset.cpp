// build_dataset: rows -> selection -> template -> ids and labels, tokenized on data.threads
// threads, with an optional binary cache keyed by everything that decides the result.
#include "r1dist/base/fs.h"
#include "r1dist/data/dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unistd.h>

#include "data/data_internal.h"
#include "r1dist/base/hash.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/data/select.h"
#include "r1dist/log/log.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

constexpr char kMagic[8] = {'R', '1', 'D', 'D', 'A', 'T', 'A', '\0'};
// Raised whenever the same rows would tokenize differently (4: whitespace after a text's final
// EOS dropped), so that an older cache is rebuilt, not reused.
constexpr uint32_t kCacheVersion = 4;

std::string hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string fingerprint(const DataConfig& cfg, const Tokenizer& tok, const PromptTemplate& tpl, uint64_t seed,
                        const std::string& bytes) {
  uint64_t h = stable_hash64(bytes);
  auto mix = [&](const std::string& s) { h = stable_hash64(std::string_view("\x1f", 1), stable_hash64(s, h)); };
  char frac[32];
  std::snprintf(frac, sizeof frac, "%a", cfg.eval_fraction);
  const DataFields& f = cfg.fields;
  for (const std::string& s :
       {std::string("r1dist-data-v2"), tok.fingerprint(), tpl.chat ? std::string("<chat>") : tpl.text, f.question,
        f.cot, f.response, f.messages, f.conversations, f.instruction, f.input, f.output, f.prompt, f.completion,
        f.text, f.reasoning, std::string(to_string(cfg.format)), std::to_string(cfg.n_samples),
        std::string(to_string(cfg.sample)), std::to_string(cfg.eval_rows), std::string(frac), std::to_string(seed),
        std::to_string(cfg.train_on_prompt), std::to_string(cfg.max_seq_len), std::string(to_string(cfg.overlong)),
        std::string(to_string(cfg.on_bad_row))})
    mix(s);
  return hex16(h);
}

// FNV-1a of the tokenized rows: each split's row ids, token ids and labels, in order.
std::string rows_fingerprint(const Dataset& d) {
  uint64_t h = fnv1a64("r1dist-rows");
  auto bytes = [&](const void* p, size_t n) { h = fnv1a64(std::string_view(static_cast<const char*>(p), n), h); };
  for (const auto* split : {&d.train, &d.eval}) {
    const uint64_t n = split->size();
    bytes(&n, sizeof n);
    for (const Example& x : *split) {
      const uint64_t len = x.ids.size();
      bytes(&x.row, sizeof x.row);
      bytes(&len, sizeof len);
      bytes(x.ids.data(), x.ids.size() * sizeof(int32_t));
      bytes(x.labels.data(), x.labels.size() * sizeof(int32_t));
    }
  }
  return hex16(h);
}

// Little-endian plain-old-data writer/reader for the cache file.
struct Writer {
  std::string out;
  template <class T> void put(T v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void put_str(const std::string& s) {
    put<uint64_t>(s.size());
    out += s;
  }
  void put_i32s(const std::vector<int32_t>& v) { out.append(reinterpret_cast<const char*>(v.data()), v.size() * 4); }
};

struct Reader {
  std::string_view in;
  size_t at = 0;
  bool ok = true;
  template <class T> T get() {
    T v{};
    if (at + sizeof v > in.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  std::string get_str() {
    const auto n = get<uint64_t>();
    if (!ok || n > in.size() - at) {
      ok = false;
      return {};
    }
    std::string s(in.substr(at, n));
    at += n;
    return s;
  }
  std::vector<int32_t> get_i32s(uint64_t n) {
    if (!ok || n > (in.size() - at) / 4) {
      ok = false;
      return {};
    }
    std::vector<int32_t> v(n);
    std::memcpy(v.data(), in.data() + at, n * 4);
    at += n * 4;
    return v;
  }
};

void put_examples(Writer& w, const std::vector<Example>& xs) {
  w.put<uint64_t>(xs.size());
  for (const auto& x : xs) {
    w.put<int64_t>(x.row);
    w.put<int64_t>(x.prompt_tokens);
    w.put<uint64_t>(x.ids.size());
    w.put_i32s(x.ids);
    w.put_i32s(x.labels);
  }
}

bool get_examples(Reader& r, std::vector<Example>& xs) {
  const auto n = r.get<uint64_t>();
  if (!r.ok || n > r.in.size()) return false;
  xs.resize(n);
  for (auto& x : xs) {
    x.row = r.get<int64_t>();
    x.prompt_tokens = r.get<int64_t>();
    const auto len = r.get<uint64_t>();
    x.ids = r.get_i32s(len);
    x.labels = r.get_i32s(len);
    if (!r.ok) return false;
  }
  return true;
}

std::string cache_file(const std::string& dir, const std::string& fp) { return dir + "/" + fp + ".bin"; }

// magic, version, fingerprint, load report, counters, train, eval, then FNV-1a of all before.
void write_cache(const std::string& dir, const Dataset& d) {
  Writer w;
  w.out.append(kMagic, sizeof kMagic);
  w.put<uint32_t>(kCacheVersion);
  w.put_str(d.fingerprint);
  w.put<uint32_t>(uint32_t(d.load.format));
  w.put<int64_t>(d.load.rows_in_file);
  w.put<int64_t>(d.load.skipped);
  w.put<uint64_t>(d.load.skip_reasons.size());
  for (const auto& s : d.load.skip_reasons) w.put_str(s);
  w.put<int64_t>(d.load.mcq_unusable);
  w.put<uint64_t>(d.load.mcq_reasons.size());
  for (const auto& s : d.load.mcq_reasons) w.put_str(s);
  w.put<int64_t>(d.truncated);
  w.put<int64_t>(d.dropped);
  w.put<int64_t>(d.without_loss);
  w.put<int64_t>(d.split_encoded);
  put_examples(w, d.train);
  put_examples(w, d.eval);
  w.put<uint64_t>(stable_hash64(w.out));

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = cache_file(dir, d.fingerprint);
  try {
    write_file_atomic(path, w.out);
  } catch (const Error& e) {
    log::warn("data: ", e.what(), "; continuing without the token cache");
  }
}

std::optional<Dataset> read_cache(const std::string& dir, const std::string& fp) {
  const std::string path = cache_file(dir, fp);
  std::string bytes;
  if (!try_read_file(path, &bytes)) return std::nullopt;
  auto invalid = [&](const char* why) -> std::optional<Dataset> {
    log::warn("data: ignoring the token cache ", path, ": ", why, "; rebuilding it");
    return std::nullopt;
  };
  if (bytes.size() < sizeof kMagic + 12 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return invalid("not an r1dist data cache");
  uint64_t sum;
  std::memcpy(&sum, bytes.data() + bytes.size() - 8, 8);
  if (sum != stable_hash64(std::string_view(bytes).substr(0, bytes.size() - 8))) return invalid("checksum mismatch");
  Reader r{std::string_view(bytes).substr(0, bytes.size() - 8), sizeof kMagic};
  if (r.get<uint32_t>() != kCacheVersion) return invalid("another format version");
  Dataset d;
  d.fingerprint = r.get_str();
  if (d.fingerprint != fp) return invalid("fingerprint mismatch");
  d.load.format = DataFormat(r.get<uint32_t>());
  if (uint32_t(d.load.format) > uint32_t(DataFormat::text)) return invalid("an unknown row format");
  d.load.rows_in_file = r.get<int64_t>();
  d.load.skipped = r.get<int64_t>();
  const auto n_reasons = r.get<uint64_t>();
  for (uint64_t i = 0; r.ok && i < n_reasons; ++i) d.load.skip_reasons.push_back(r.get_str());
  d.load.mcq_unusable = r.get<int64_t>();
  const auto n_mcq = r.get<uint64_t>();
  for (uint64_t i = 0; r.ok && i < n_mcq; ++i) d.load.mcq_reasons.push_back(r.get_str());
  d.truncated = r.get<int64_t>();
  d.dropped = r.get<int64_t>();
  d.without_loss = r.get<int64_t>();
  d.split_encoded = r.get<int64_t>();
  if (!r.ok || !get_examples(r, d.train) || !get_examples(r, d.eval) || r.at != r.in.size())
    return invalid("truncated or malformed");
  d.from_cache = true;
  return d;
}

// A row that cannot be trained on: an error, or skipped and counted (data.on_bad_row).
void bad_row(const DataConfig& cfg, const Row& row, const std::string& why, Dataset& d) {
  if (cfg.on_bad_row == BadRowPolicy::error)
    throw DataError(row.where + ": " + why +
                    "\nHINT: fix the row, or set data.on_bad_row = \"skip\" to skip and count bad rows");
  ++d.load.skipped;
  d.load.skip_reasons.push_back(row.where + ": " + why);
}

// Tokenizes rows[sel[i]] into examples; over-long rows are truncated or dropped, and rows
// that truncation leaves without a loss token are dropped (Dataset::without_loss).
// Three kinds of rows: plain text (BOS + text + EOS, labels on all of it; whitespace after a
// final EOS dropped; no second BOS or EOS where the text starts or ends with one); a prompt template
// (prompt + response encoded whole, BOS and the EOS id added); the chat template (each segment
// encoded on its own: segments meet at added tokens, which the tokenizer splits on anyway, so
// the ids equal the whole text's).
void tokenize(const std::vector<Row>& rows, const std::vector<int64_t>& sel, const PromptTemplate& tpl,
              const DataConfig& cfg, const Tokenizer& tok, std::vector<Example>& out, Dataset& d) {
  const auto bos = tok.bos_id(), eos = tok.eos_id();
  if (!eos)
    throw Error(tok.path() + ": the tokenizer defines no EOS token, which ends every training row\nHINT: use a "
                             "tokenizer directory whose tokenizer_config.json names eos_token");
  const size_t k = sel.size();
  std::vector<std::vector<Segment>> segs(k);
  std::vector<std::string> why(k), texts;
  std::vector<size_t> first(k + 1, 0);  // texts[first[i], first[i + 1]) belong to row i
  auto is_text = [](const Row& r) { return r.turns.size() == 1 && r.turns[0].role == Turn::Role::text; };
  for (size_t i = 0; i < k; ++i) {
    const Row& row = rows[static_cast<size_t>(sel[i])];
    first[i] = texts.size();
    if (is_text(row)) {
      // A text that ends with EOS and then whitespace ends at its EOS: the whitespace after it
      // would otherwise be trained on and a second EOS added after it.
      const std::string& text = row.turns[0].content;
      const std::string_view eos_text = tok.id_to_token(*eos);
      const size_t end = text.find_last_not_of(" \t\r\n") + 1;  // 0 for an all-space text (npos + 1)
      const bool eos_then_space = end < text.size() && !eos_text.empty() && end >= eos_text.size() &&
                                  text.compare(end - eos_text.size(), eos_text.size(), eos_text) == 0;
      texts.push_back(eos_then_space ? text.substr(0, end) : text);
    } else if (!(why[i] = tpl.render_segments(row, segs[i])).empty()) {
    } else if (!tpl.chat) {
      texts.push_back(segs[i][0].text + segs[i][1].text);  // full text, then the prompt
      texts.push_back(segs[i][0].text);
    } else {
      for (Segment& sg : segs[i]) texts.push_back(std::move(sg.text));
    }
  }
  first[k] = texts.size();
  auto enc = tok.encode_batch(texts, cfg.threads);
  std::vector<std::string>().swap(texts);
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) {
    const Row& row = rows[static_cast<size_t>(sel[i])];
    if (!why[i].empty()) {
      bad_row(cfg, row, why[i], d);
      continue;
    }
    Example x;
    x.row = row.index;
    if (is_text(row)) {
      // A text that already starts with BOS (a rendered chat template) gets no second one.
      std::vector<int32_t>& t = enc[first[i]];
      if (bos && (t.empty() || t.front() != *bos)) x.ids.push_back(*bos);
      x.ids.insert(x.ids.end(), t.begin(), t.end());
      if (t.empty() || t.back() != *eos) x.ids.push_back(*eos);
      x.prompt_tokens = bos ? 1 : 0;
      x.labels = x.ids;  // plain text: loss on all of it
    } else if (!tpl.chat) {
      if (bos) x.ids.push_back(*bos);
      std::vector<int32_t>& full = enc[first[i]];
      const std::vector<int32_t>& prompt = enc[first[i] + 1];
      if (prompt.size() > full.size() || !std::equal(prompt.begin(), prompt.end(), full.begin())) {
        full = prompt;
        const auto resp = tok.encode(segs[i][1].text);
        full.insert(full.end(), resp.begin(), resp.end());
        ++d.split_encoded;
      }
      x.ids.insert(x.ids.end(), full.begin(), full.end());
      x.ids.push_back(*eos);
      x.prompt_tokens = (bos ? 1 : 0) + static_cast<int64_t>(prompt.size());
      x.labels = x.ids;
      if (!cfg.train_on_prompt) std::fill(x.labels.begin(), x.labels.begin() + x.prompt_tokens, -100);
    } else {
      if (bos) x.ids.push_back(*bos);
      x.labels = x.ids;  // BOS
      if (!cfg.train_on_prompt) std::fill(x.labels.begin(), x.labels.end(), -100);
      x.prompt_tokens = -1;
      std::string over;
      for (size_t j = 0; j < segs[i].size() && over.empty(); ++j) {
        const std::vector<int32_t>& t = enc[first[i] + j];
        if (static_cast<int64_t>(t.size()) > cfg.max_seq_len)
          over = std::string(segs[i][j].label ? "an assistant turn" : "the turns before an assistant turn") +
                 " alone " + (segs[i][j].label ? "is " : "are ") + std::to_string(t.size()) +
                 " tokens, over data.max_seq_len = " + std::to_string(cfg.max_seq_len);
        if (segs[i][j].label && x.prompt_tokens < 0) x.prompt_tokens = static_cast<int64_t>(x.ids.size());
        x.ids.insert(x.ids.end(), t.begin(), t.end());
        if (segs[i][j].label || cfg.train_on_prompt) x.labels.insert(x.labels.end(), t.begin(), t.end());
        else x.labels.resize(x.ids.size(), -100);
      }
      if (!over.empty()) {
        bad_row(cfg, row, over, d);
        continue;
      }
      if (x.prompt_tokens < 0) x.prompt_tokens = static_cast<int64_t>(x.ids.size());
    }
    if (static_cast<int64_t>(x.ids.size()) > cfg.max_seq_len) {
      if (cfg.overlong == OverlongPolicy::drop) {
        ++d.dropped;
        continue;
      }
      x.ids.resize(static_cast<size_t>(cfg.max_seq_len));
      x.labels.resize(static_cast<size_t>(cfg.max_seq_len));
      x.prompt_tokens = std::min<int64_t>(x.prompt_tokens, cfg.max_seq_len);
      ++d.truncated;
    }
    if (loss_tokens(x) == 0) {  // cut before its response: nothing to learn or score
      ++d.without_loss;
      continue;
    }
    out.push_back(std::move(x));
  }
}

// The rows that data.max_seq_len shortened or dropped, and those tokenized in two parts (also
// when the data comes from the cache).
void warn_about_tokenization(const Dataset& d, const DataConfig& cfg) {
  if (d.truncated || d.dropped)
    log::warn("data: ", d.truncated ? d.truncated : d.dropped, " rows longer than data.max_seq_len = ", cfg.max_seq_len,
              d.truncated ? " truncated" : " dropped");
  if (d.without_loss)
    log::warn("data: ", d.without_loss, " rows dropped: no loss token left after truncation to data.max_seq_len = ",
              cfg.max_seq_len, cfg.train_on_prompt ? "" : " (loss on the responses only, and the prompt fills it)");
  if (d.split_encoded)
    log::warn("data: ", d.split_encoded,
              " rows had a token spanning the prompt/response boundary; their prompt and response were tokenized "
              "separately");
}

}  // namespace

Dataset build_dataset(const DataConfig& cfg, const Tokenizer& tok, uint64_t seed, const std::string& cache_dir) {
  if (cfg.path.empty()) throw UsageError("data.path is empty\nHINT: set data.path to a JSON or JSONL file of rows");
  const auto t0 = std::chrono::steady_clock::now();
  const std::string bytes = data::read_file(cfg.path);
  const std::string fp = fingerprint(cfg, tok, PromptTemplate::configured(cfg.template_text), seed, bytes);
  if (!cache_dir.empty()) {
    if (auto cached = read_cache(cache_dir, fp)) {
      data::log_skipped(cached->load, cfg.path);
      warn_about_tokenization(*cached, cfg);
      cached->rows_fingerprint = rows_fingerprint(*cached);
      log::info("data: ", cached->train.size(), " train + ", cached->eval.size(), " eval rows from the cache ",
                cache_file(cache_dir, fp));
      return std::move(*cached);
    }
  }
  Dataset d;
  d.fingerprint = fp;
  const auto rows = data::parse_rows(cfg, cfg.path, bytes, &d.load);
  const PromptTemplate tpl = PromptTemplate::for_format(cfg.template_text, d.load.format);
  if (!tpl.has_response())
    throw UsageError("data.template has no {response} placeholder: the training text would hold no answer, "
                     "only the prompt and EOS\nHINT: put {response} where the answer goes");
  const Split split = select_rows(static_cast<int64_t>(rows.size()), cfg, seed);
  // Each split's rows that did not make it, for the messages below.
  auto tokenize_split = [&](const std::vector<int64_t>& sel, std::vector<Example>& out) {
    const int64_t dropped = d.dropped, without_loss = d.without_loss, skipped = d.load.skipped;
    tokenize(rows, sel, tpl, cfg, tok, out, d);
    return std::to_string(d.dropped - dropped) + " longer than data.max_seq_len = " + std::to_string(cfg.max_seq_len) +
           " dropped (data.overlong), " + std::to_string(d.without_loss - without_loss) +
           " without a loss token after truncation" +
           (cfg.train_on_prompt ? "" : " (loss on the responses only: the prompt fills data.max_seq_len)") + ", " +
           std::to_string(d.load.skipped - skipped) + " bad rows skipped";
  };
  const std::string train_losses = tokenize_split(split.train, d.train);
  const std::string eval_losses = tokenize_split(split.eval, d.eval);
  data::log_skipped(d.load, cfg.path);
  const std::string hint = "\nHINT: raise data.max_seq_len" +
                           std::string(cfg.overlong == OverlongPolicy::drop ? ", set data.overlong = \"truncate\"" : "") +
                           (cfg.train_on_prompt ? "" : ", or set data.train_on_prompt = true");
  if (d.train.empty())
    throw DataError(cfg.path + ": none of the " + std::to_string(split.train.size()) + " selected rows is left: " +
                    train_losses + hint);
  // Held-out rows are chosen before tokenization: the ones dropped are not replaced.
  if (!split.eval.empty() && d.eval.empty())
    throw DataError(cfg.path + ": none of the " + std::to_string(split.eval.size()) +
                    " held-out rows (data.eval_rows / data.eval_fraction) is left: " + eval_losses + hint);
  if (d.eval.size() < split.eval.size())
    log::warn("data: ", d.eval.size(), " of the ", split.eval.size(), " held-out rows are left (the others dropped)");
  warn_about_tokenization(d, cfg);
  d.rows_fingerprint = rows_fingerprint(d);
  if (!cache_dir.empty()) write_cache(cache_dir, d);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("data: ", d.train.size(), " train + ", d.eval.size(), " eval rows from ", cfg.path, " in ", s,
            " s (fingerprint ", fp, ")");
  return d;
}

std::vector<int64_t> example_lengths(const std::vector<Example>& examples) {
  std::vector<int64_t> out;
  out.reserve(examples.size());
  for (const auto& e : examples) out.push_back(int64_t(e.ids.size()));
  return out;
}

int64_t loss_tokens(const Example& e) {
  int64_t n = 0;
  for (size_t i = 1; i < e.labels.size(); ++i) n += e.labels[i] != -100;
  return n;
}

}  // namespace r1dist
