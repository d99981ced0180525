// ICU (libicu, Unicode 15.0 in Debian 12) is what node's String.prototype.normalize uses
// too, so the JavaScript reference and r1dist share the normalisation algorithm.
#include "tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include <cstring>

#include "r1dist/base/error.h"

namespace r1dist::tok {

namespace {

const icu::Normalizer2* instance(UnicodeForm f) {
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (f) {
    case UnicodeForm::NFC: n = icu::Normalizer2::getNFCInstance(st); break;
    case UnicodeForm::NFD: n = icu::Normalizer2::getNFDInstance(st); break;
    case UnicodeForm::NFKC: n = icu::Normalizer2::getNFKCInstance(st); break;
    case UnicodeForm::NFKD: n = icu::Normalizer2::getNFKDInstance(st); break;
  }
  if (U_FAILURE(st) || !n) throw Error(std::string("ICU normaliser unavailable: ") + u_errorName(st));
  return n;
}

bool all_ascii(std::string_view s) {
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (w & 0x8080808080808080ULL) return false;
  }
  for (; i < s.size(); ++i)
    if (static_cast<unsigned char>(s[i]) >= 0x80) return false;
  return true;
}

}  // namespace

Normalizer::Normalizer(std::vector<UnicodeForm> forms) : forms_(std::move(forms)) {
  for (auto f : forms_) icu_.push_back(instance(f));
}

std::string_view Normalizer::apply(std::string_view in, std::string& buf) const {
  if (forms_.empty() || all_ascii(in)) return in;  // ASCII is invariant under all four forms
  std::string_view cur = in;
  std::string tmp;
  for (const void* p : icu_) {
    const auto* n = static_cast<const icu::Normalizer2*>(p);
    UErrorCode st = U_ZERO_ERROR;
    const icu::StringPiece sp(cur.data(), static_cast<int32_t>(cur.size()));
    if (n->isNormalizedUTF8(sp, st) && U_SUCCESS(st)) continue;
    st = U_ZERO_ERROR;
    tmp.clear();
    tmp.reserve(cur.size() + cur.size() / 4);
    icu::StringByteSink<std::string> sink(&tmp);
    n->normalizeUTF8(0, sp, sink, nullptr, st);
    if (U_FAILURE(st)) throw Error(std::string("tokenizer: ICU normalisation failed: ") + u_errorName(st));
    buf.swap(tmp);
    cur = buf;
  }
  return cur;
}

}  // namespace r1dist::tok
