// Tokenizer: the byte-level BPE tokenizer of an HF `tokenizer.json` (Qwen2 / DeepSeek-R1-
// Distill-Qwen), producing the ids HF `tokenizers` produces. Pipeline: invalid
// UTF-8 -> U+FFFD, added tokens split off the raw text, NFC, Split regex (PCRE2, Oniguruma
// semantics), byte-level BPE by merge rank, post-processor (BOS). docs/TOKENIZER.md has the
// details and the documented differences from the JavaScript reference.
//
// A Tokenizer is a cheap, copyable handle to immutable tables; every method is thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace r1dist {

class Tokenizer {
 public:
  // `dir_or_file`: a directory with tokenizer.json (and optionally tokenizer_config.json,
  // which supplies bos/eos), or the tokenizer.json file itself. Throws Error naming the
  // file and field on anything malformed or unsupported.
  static Tokenizer load(const std::string& dir_or_file);

  // Text (any bytes: invalid UTF-8 sequences become U+FFFD first) to ids. add_special
  // applies the post-processor template (for R1: prepends BOS).
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // Many texts on `threads` threads (<= 0: hardware concurrency); same ids as encode().
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts, int threads,
                                                 bool add_special = false) const;
  // Ids to text: each token's bytes (byte-level decoded; added tokens as written), then
  // invalid UTF-8 replaced by U+FFFD. Throws Error on an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  std::string_view id_to_token(int32_t id) const;     // "" for an id without a token
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  int32_t vocab_size() const;  // largest id + 1 (R1: 151665)
  bool is_special(int32_t id) const;
  // For writers of other formats (GGUF): what kind of token an id is, and the merges in rank
  // order as token pairs (spelled as id_to_token spells them).
  enum class TokenKind : uint8_t { none, normal, added, added_special };  // none: no token has the id
  TokenKind token_kind(int32_t id) const;
  std::vector<std::pair<std::string, std::string>> merges() const;
  // 16 hex digits: FNV-1a 64 over tokenizer.json and tokenizer_config.json, for caches.
  std::string fingerprint() const;
  const std::string& path() const;

  struct Impl;

 private:
  Tokenizer() = default;  // only load() makes one, so a Tokenizer always has tables
  std::shared_ptr<const Impl> impl_;
};

// Replaces every ill-formed UTF-8 subsequence by U+FFFD, one per maximal subpart (the
// Unicode "best practice" that WHATWG TextDecoder, Python and Rust's from_utf8_lossy use).
std::string utf8_sanitize(std::string_view bytes);

}  // namespace r1dist
