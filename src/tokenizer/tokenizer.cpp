// Tokenizer: loading tokenizer.json into tables, and the encode / decode pipelines.
#include "r1dist/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/hash.h"
#include "r1dist/base/json.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretoken_cache.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace r1dist {

using namespace tok;

namespace tok {

// What one encoding thread needs to itself.
struct Scratch {
  MatchScratch match;
  PretokenCache cache;
  std::string fixed, normalized;
  std::vector<int32_t> word;
};

}  // namespace tok

namespace {

// The GPT-2 regex that ByteLevel applies when its use_regex is true.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  std::string path, fingerprint;
  int32_t vocab_size = 0;
  std::vector<std::string> id_to_token;  // byte-level form for vocab tokens, content for added
  std::vector<std::string> token_bytes;  // what decode writes for each id
  std::vector<uint8_t> special;
  std::vector<Tokenizer::TokenKind> kind;
  std::unordered_map<std::string_view, int32_t> token_to_id;  // views into id_to_token
  std::unordered_map<std::string_view, int32_t> bytes_to_id;  // ignore_merges only
  int32_t byte_id[256] = {};
  BpeMerges merges;
  bool ignore_merges = false;
  Normalizer normalizer;
  PreTokenizer pretokenizer;
  AddedTokenMatcher added_raw, added_normalized;
  std::vector<int32_t> prefix, suffix;  // post-processor template around the text
  std::optional<int32_t> bos, eos;

  mutable std::mutex pool_mu;
  mutable std::vector<std::unique_ptr<Scratch>> pool;

  // Checks a scratch out of the pool for the duration of one call.
  struct Lease {
    const Impl* impl;
    std::unique_ptr<Scratch> s;
    explicit Lease(const Impl* i) : impl(i) {
      {
        std::lock_guard<std::mutex> g(impl->pool_mu);
        if (!impl->pool.empty()) {
          s = std::move(impl->pool.back());
          impl->pool.pop_back();
        }
      }
      if (!s) s = std::make_unique<Scratch>();
    }
    ~Lease() {
      std::lock_guard<std::mutex> g(impl->pool_mu);
      if (impl->pool.size() < 64) impl->pool.push_back(std::move(s));
    }
  };

  void encode_word(std::string_view w, Scratch& s, std::vector<int32_t>& out) const {
    if (w.size() == 1) {
      out.push_back(byte_id[static_cast<unsigned char>(w[0])]);
      return;
    }
    const bool cacheable = w.size() <= PretokenCache::kMaxKey;
    uint64_t h = 0;
    if (cacheable) {
      h = PretokenCache::hash(w);
      if (s.cache.get(w, h, out)) return;
    }
    auto& word = s.word;
    word.clear();
    bool whole = false;
    if (ignore_merges) {
      auto it = bytes_to_id.find(w);
      if (it != bytes_to_id.end()) {
        word.push_back(it->second);
        whole = true;
      }
    }
    if (!whole) {
      word.resize(w.size());
      for (size_t i = 0; i < w.size(); ++i) word[i] = byte_id[static_cast<unsigned char>(w[i])];
      merges.merge(word);
    }
    out.insert(out.end(), word.begin(), word.end());
    if (cacheable) s.cache.put(w, h, word.data(), word.size());
  }

  void encode_pretokens(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
    pretokenizer.split(text, s.match, [&](std::string_view w) { encode_word(w, s, out); });
  }

  void encode_into(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
    if (!utf8_is_valid(text)) {
      s.fixed.clear();
      utf8_sanitize_append(text, s.fixed);
      text = s.fixed;
    }
    auto piece = [&](std::string_view raw) {
      const std::string_view n = normalizer.apply(raw, s.normalized);
      if (added_normalized.empty()) {
        encode_pretokens(n, s, out);
      } else {
        added_normalized.split(
            n, [&](std::string_view p) { encode_pretokens(p, s, out); }, [&](int32_t id) { out.push_back(id); });
      }
    };
    added_raw.split(text, piece, [&](int32_t id) { out.push_back(id); });
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special, Scratch& s) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special) out.insert(out.end(), prefix.begin(), prefix.end());
    encode_into(text, s, out);
    if (add_special) out.insert(out.end(), suffix.begin(), suffix.end());
    return out;
  }
};

// ----------------------------------------------------------------------------------------
// Loading

namespace {

struct Loader {
  std::string file;
  Tokenizer::Impl& t;

  [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
    throw UsageError("tokenizer " + file + ": " + field + ": " + msg);
  }
  [[noreturn]] void fail(const JsonView& v, const std::string& msg) const { fail(v.path(), msg); }

  void normalizer(const JsonView& j, std::vector<UnicodeForm>& forms) const {
    if (!j.present()) return;
    const auto type = j["type"].string();
    if (type == "NFC") forms.push_back(UnicodeForm::NFC);
    else if (type == "NFD") forms.push_back(UnicodeForm::NFD);
    else if (type == "NFKC") forms.push_back(UnicodeForm::NFKC);
    else if (type == "NFKD") forms.push_back(UnicodeForm::NFKD);
    else if (type == "Sequence") {
      for (const auto& n : j["normalizers"].elements()) normalizer(n, forms);
    } else {
      fail(j["type"], "'" + type + "' is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)");
    }
  }

  void pre_tokenizer(const JsonView& j, bool& byte_level) const {
    if (!j.present()) return;
    const auto type = j["type"].string();
    if (type == "Sequence") {
      for (const auto& p : j["pretokenizers"].elements()) pre_tokenizer(p, byte_level);
    } else if (type == "Split") {
      if (byte_level) fail(j, "a Split after the ByteLevel step is not supported");
      const auto pat = j["pattern"];
      std::string onig;
      if (pat["Regex"].present()) onig = pat["Regex"].string();
      else if (pat["String"].present()) onig = regex_escape(pat["String"].string());
      else fail(pat, "must be {\"Regex\": ...} or {\"String\": ...}");
      const auto behavior = j["behavior"].string();
      if (behavior != "Isolated") fail(j["behavior"], "'" + behavior + "' is not supported (supported: Isolated)");
      if (j["invert"].boolean_or(false)) fail(j["invert"], "true is not supported");
      t.pretokenizer.add_split(onig, "tokenizer " + file + ": " + pat.path());
    } else if (type == "ByteLevel") {
      if (j["add_prefix_space"].boolean_or(false)) fail(j["add_prefix_space"], "true is not supported");
      if (j["use_regex"].boolean_or(true)) t.pretokenizer.add_split(kGpt2Pattern, j.path() + " (GPT-2 regex)");
      byte_level = true;
    } else {
      fail(j["type"], "'" + type + "' is not supported (supported: Sequence, Split, ByteLevel)");
    }
  }

  std::vector<int32_t> special_ids(const JsonView& tpl, const std::string& name) const {
    const auto entry = tpl["special_tokens"][name];
    if (!entry.present()) {
      tpl["special_tokens"].items();  // names a special_tokens that is not an object
      fail(tpl["special_tokens"], "has no entry for '" + name + "'");
    }
    std::vector<int32_t> out;
    for (const auto& v : entry["ids"].elements()) {
      const int64_t id = v.integer();
      if (id < 0 || id >= t.vocab_size) fail(v, "id " + std::to_string(id) + " is outside the vocabulary");
      out.push_back(int32_t(id));
    }
    return out;
  }

  void post_processor(const JsonView& j) const {
    if (!j.present()) return;
    const auto type = j["type"].string();
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      for (const auto& p : j["processors"].elements()) post_processor(p);
      return;
    }
    if (type != "TemplateProcessing")
      fail(j["type"], "'" + type + "' is not supported (supported: ByteLevel, TemplateProcessing, Sequence)");
    std::vector<int32_t> pre, post;
    int seen = 0;
    for (const auto& item : j["single"].elements()) {
      if (item["SpecialToken"].present()) {
        const auto ids = special_ids(j, item["SpecialToken"]["id"].string());
        (seen ? post : pre).insert((seen ? post : pre).end(), ids.begin(), ids.end());
      } else if (item["Sequence"].present()) {
        if (item["Sequence"]["id"].string() != "A" || seen++)
          fail(item, "a single-sequence template must contain Sequence A exactly once");
      } else {
        fail(item, "must be a SpecialToken or a Sequence");
      }
    }
    if (!seen) fail(j["single"], "has no Sequence A");
    t.prefix.insert(t.prefix.begin(), pre.begin(), pre.end());
    t.suffix.insert(t.suffix.end(), post.begin(), post.end());
  }

  void model(const JsonView& m) {
    if (!m.is_object()) fail(m, "is " + (m.present() ? json_found(m.json()) : std::string("missing")) + ", not an object");
    const std::string type = m["type"].string_or("BPE");
    if (type != "BPE") fail(m["type"], "'" + type + "' is not supported (supported: BPE)");
    if (m["dropout"].present() && m["dropout"].number() != 0.0)
      fail(m["dropout"], "BPE dropout is not supported (must be null or 0)");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (!m[k].string_or("").empty()) fail(m[k], "a non-empty value is not supported");
    t.ignore_merges = m["ignore_merges"].boolean_or(false);
  }
};

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir_or_file) {
  std::string file = dir_or_file, config;
  if (is_dir(dir_or_file)) file = dir_or_file + "/tokenizer.json";
  if (!is_file(file))
    throw Error("tokenizer: " + file + " does not exist\nHINT: pass a model directory that holds tokenizer.json");
  const auto slash = file.find_last_of('/');
  const std::string cfg_path = (slash == std::string::npos ? std::string(".") : file.substr(0, slash)) +
                               "/tokenizer_config.json";
  if (is_file(cfg_path)) config = cfg_path;

  auto impl = std::make_shared<Impl>();
  Impl& t = *impl;
  t.path = file;
  const std::string text = read_file(file);
  const std::string cfg_text = config.empty() ? "" : read_file(config);
  char fp[17];
  std::snprintf(fp, sizeof fp, "%016llx",
                static_cast<unsigned long long>(fnv1a64(cfg_text, fnv1a64(std::string_view("\0", 1), fnv1a64(text)))));
  t.fingerprint = fp;

  const Json doc = parse_json(text, "tokenizer " + file);
  const JsonView j(doc, "tokenizer " + file);
  Loader L{file, t};
  if (!j.is_object()) L.fail("(top level)", "must be a JSON object");
  if (j["truncation"].present())
    L.fail("truncation", "is not supported (r1dist truncates in the data pipeline); set it to null");

  const auto m = j["model"];
  L.model(m);
  const auto vocab_v = m["vocab"];
  if (!vocab_v.is_object()) vocab_v.items();  // missing, or not an object: named
  const Json& vocab = vocab_v.json();
  const auto added = j["added_tokens"];
  if (added.present() && !added.is_array()) added.elements();

  // Sizes first, so that the string tables never reallocate once views point into them.
  // (The vocabulary is read as raw JSON: 150k entries through JsonView would cost a path
  // string each; the checks below name the entry the same way.)
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX - 1)
      L.fail("model.vocab[\"" + it.key() + "\"]", "is " + json_found(it.value()) + ", not a non-negative integer id");
    max_id = std::max<int64_t>(max_id, it.value().get<int64_t>());
  }
  std::vector<AddedToken> added_tokens;
  for (const auto& a : added.present() ? added.elements() : std::vector<JsonView>{}) {
    AddedToken tk;
    const int64_t id = a["id"].integer();
    if (id < 0 || id > INT32_MAX - 1) L.fail(a["id"], "must be a non-negative integer");
    tk.id = int32_t(id);
    tk.content = a["content"].string();
    if (tk.content.empty()) L.fail(a["content"], "must not be empty");
    if (!utf8_is_valid(tk.content)) L.fail(a["content"], "is not valid UTF-8");
    if (a["single_word"].boolean_or(false)) L.fail(a["single_word"], "true is not supported");
    tk.lstrip = a["lstrip"].boolean_or(false);
    tk.rstrip = a["rstrip"].boolean_or(false);
    tk.special = a["special"].boolean_or(false);
    tk.normalized = a["normalized"].boolean_or(!tk.special);
    max_id = std::max<int64_t>(max_id, tk.id);
    added_tokens.push_back(tk);
  }
  if (max_id < 255) L.fail("model.vocab", "has fewer than the 256 byte-level tokens");
  t.vocab_size = int32_t(max_id + 1);
  t.id_to_token.assign(t.vocab_size, {});
  t.token_bytes.assign(t.vocab_size, {});
  t.special.assign(t.vocab_size, 0);
  std::vector<uint8_t> present(t.vocab_size, 0);

  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = int32_t(it.value().get<int64_t>());
    if (present[id]) L.fail("model.vocab", "id " + std::to_string(id) + " is given to both '" + t.id_to_token[id] + "' and '" + it.key() + "'");
    if (!utf8_is_valid(it.key())) L.fail("model.vocab", "token with id " + std::to_string(id) + " is not valid UTF-8");
    present[id] = 1;
    t.id_to_token[id] = it.key();
  }
  for (const auto& tk : added_tokens) {
    t.id_to_token[tk.id] = tk.content;
    present[tk.id] = 1;
    t.special[tk.id] = tk.special;
  }
  t.kind.assign(t.vocab_size, TokenKind::none);
  for (int32_t id = 0; id < t.vocab_size; ++id)
    if (present[id]) t.kind[id] = TokenKind::normal;
  for (const auto& tk : added_tokens) t.kind[tk.id] = tk.special ? TokenKind::added_special : TokenKind::added;
  for (int32_t id = 0; id < t.vocab_size; ++id) {
    if (!present[id]) continue;
    t.token_bytes[id] = token_to_bytes(t.id_to_token[id]);
  }
  t.token_to_id.reserve(size_t(t.vocab_size));
  for (int32_t id = 0; id < t.vocab_size; ++id)
    if (present[id]) t.token_to_id[t.id_to_token[id]] = id;
  for (const auto& tk : added_tokens) t.token_to_id[t.id_to_token[tk.id]] = tk.id;  // added wins
  if (t.ignore_merges) t.bytes_to_id.reserve(size_t(t.vocab_size));
  if (t.ignore_merges)
    for (int32_t id = 0; id < t.vocab_size; ++id)
      if (present[id]) t.bytes_to_id.emplace(t.token_bytes[id], id);

  for (int b = 0; b < 256; ++b) {
    const auto s = bytes_to_token(std::string(1, char(b)));
    auto it = t.token_to_id.find(s);
    if (it == t.token_to_id.end()) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      L.fail("model.vocab", std::string("lacks the byte-level token for byte ") + hex + " ('" + s + "')");
    }
    t.byte_id[b] = it->second;
  }

  // The merges, like the vocabulary, as raw JSON (hundreds of thousands of entries).
  const auto merges_v = m["merges"];
  if (!merges_v.is_array()) merges_v.elements();
  const Json& merges = merges_v.json();
  std::string a, b, ab;
  t.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& mj = merges[i];
    const std::string at = "model.merges[" + std::to_string(i) + "]";
    if (mj.is_string()) {  // "a b" (tokenizers < 0.20)
      const auto& s = mj.get_ref<const std::string&>();
      const auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        L.fail(at, "'" + s + "' must be two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
      a = mj[0].get_ref<const std::string&>();
      b = mj[1].get_ref<const std::string&>();
    } else {
      L.fail(at, "is " + json_found(mj) + ", not \"a b\" or [\"a\", \"b\"]");
    }
    ab.assign(a).append(b);
    auto ia = t.token_to_id.find(a), ib = t.token_to_id.find(b), im = t.token_to_id.find(ab);
    if (ia == t.token_to_id.end()) L.fail(at, "'" + a + "' is not in model.vocab");
    if (ib == t.token_to_id.end()) L.fail(at, "'" + b + "' is not in model.vocab");
    if (im == t.token_to_id.end()) L.fail(at, "the merged token '" + a + b + "' is not in model.vocab");
    t.merges.add(ia->second, ib->second, im->second);
  }

  for (const auto& tk : added_tokens) (tk.normalized ? t.added_normalized : t.added_raw).add(tk);

  std::vector<UnicodeForm> forms;
  L.normalizer(j["normalizer"], forms);
  t.normalizer = Normalizer(forms);
  bool byte_level = false;
  L.pre_tokenizer(j["pre_tokenizer"], byte_level);
  if (!byte_level)
    L.fail("pre_tokenizer", "has no ByteLevel step; r1dist supports byte-level BPE tokenizers only");
  if (j["decoder"]["type"].string_or("") != "ByteLevel")
    L.fail("decoder", "must be {\"type\": \"ByteLevel\", ...} (byte-level BPE only)");
  L.post_processor(j["post_processor"]);

  if (!config.empty()) {
    const Json cdoc = parse_json(cfg_text, "tokenizer " + config);
    const JsonView c(cdoc, "tokenizer " + config);
    auto special_of = [&](const char* key) -> std::optional<int32_t> {
      const auto v = c[key];
      if (!v.present()) return std::nullopt;
      const std::string content = v.is_object() ? v["content"].string() : v.string();
      auto found = t.token_to_id.find(content);
      if (found == t.token_to_id.end())
        throw Error("tokenizer " + config + ": " + key + ": '" + content + "' is not a token of " + file);
      return found->second;
    };
    t.bos = special_of("bos_token");
    t.eos = special_of("eos_token");
  }

  Tokenizer out;
  out.impl_ = std::move(impl);
  return out;
}

// ----------------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  Impl::Lease lease(impl_.get());
  return impl_->encode(text, add_special, *lease.s);
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts, int threads,
                                                          bool add_special) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<size_t>(size_t(threads), std::max<size_t>(1, texts.size())));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    try {
      Impl::Lease lease(impl_.get());
      for (size_t i; (i = next.fetch_add(1)) < texts.size();) out[i] = impl_->encode(texts[i], add_special, *lease.s);
    } catch (...) {
      std::lock_guard<std::mutex> g(error_mu);
      if (!error) error = std::current_exception();
      next = texts.size();
    }
  };
  if (threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; ++k) pool.emplace_back(work);
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= t.vocab_size || t.id_to_token[id].empty())
      throw Error("decode: id " + std::to_string(id) + " at position " + std::to_string(i) +
                  " is not a token of " + t.path + " (vocabulary size " + std::to_string(t.vocab_size) + ")");
    if (skip_special && t.special[id]) continue;
    bytes += t.token_bytes[id];
  }
  if (utf8_is_valid(bytes)) return bytes;
  return utf8_sanitize(bytes);
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  return it == impl_->token_to_id.end() ? -1 : it->second;
}

std::string_view Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size) return {};
  return impl_->id_to_token[id];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < impl_->vocab_size && impl_->special[id]; }

Tokenizer::TokenKind Tokenizer::token_kind(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size ? impl_->kind[id] : TokenKind::none;
}

std::vector<std::pair<std::string, std::string>> Tokenizer::merges() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(impl_->merges.size());
  for (const auto& m : impl_->merges.ranked()) out.emplace_back(impl_->id_to_token[m.left], impl_->id_to_token[m.right]);
  return out;
}
std::string Tokenizer::fingerprint() const { return impl_->fingerprint; }
const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace r1dist
