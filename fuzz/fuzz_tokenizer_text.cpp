// Text through the R1-distill tokenizer (tokenizer/tokenizer.h; tokenizer.json from
// .deps/tokenizer-r1, which tools/install-deps.sh writes): any bytes must encode, and the ids
// must obey what a byte-level BPE promises:
//   - every id is in the vocabulary;
//   - decoding gives back the text (its invalid UTF-8 as U+FFFD) wherever the text is in NFC
//     and holds no '<' (every added token starts with one: those are matched on the raw text,
//     the rest is normalized);
//   - encoding the decoded text gives the same ids (the normalization and the merges are
//     idempotent);
//   - a batch gives the ids of single encodes, also for the same text twice.
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "r1dist/tokenizer/tokenizer.h"

namespace {

const r1dist::Tokenizer& r1() {
  static const r1dist::Tokenizer tok = [] {
    try {
      return r1dist::Tokenizer::load(R1DIST_TOKENIZER_DIR);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_tokenizer_text: %s (bash tools/install-deps.sh writes it)\n", e.what());
      std::abort();
    }
  }();
  return tok;
}

// Whether valid UTF-8 `s` is in NFC, by ICU (the normalizer the tokenizer also uses, asked
// only whether the text would change).
bool is_nfc(const std::string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  u_strFromUTF8(nullptr, 0, &n, s.data(), int32_t(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return false;
  std::vector<UChar> u(size_t(n) + 1);
  err = U_ZERO_ERROR;
  u_strFromUTF8(u.data(), n + 1, nullptr, s.data(), int32_t(s.size()), &err);
  if (U_FAILURE(err)) return false;
  const UNormalizer2* nfc = unorm2_getNFCInstance(&err);
  if (U_FAILURE(err)) std::abort();
  const UBool yes = unorm2_isNormalized(nfc, u.data(), n, &err);
  return U_SUCCESS(err) && yes;
}

void fail(const char* what, const std::string& text) {
  std::fprintf(stderr, "fuzz_tokenizer_text: %s (input of %zu bytes)\n", what, text.size());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = r1();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = tok.encode(text);
  for (const auto id : ids)
    if (id < 0 || id >= tok.vocab_size()) fail("an id outside the vocabulary", text);
  const std::string decoded = tok.decode(ids);
  const std::string clean = r1dist::utf8_sanitize(text);
  if (clean.find('<') == std::string::npos && is_nfc(clean) && decoded != clean)
    fail("decode(encode(text)) differs from the text", text);
  if (tok.encode(decoded) != ids) fail("encode(decode(ids)) differs from the ids", text);
  const auto batch = tok.encode_batch({text, decoded, text}, 1);
  if (batch.size() != 3 || batch[0] != ids || batch[1] != ids || batch[2] != ids)
    fail("a batch differs from single encodes", text);
  return 0;
}
