// Well-formed UTF-8 per Unicode Table 3-7; an ill-formed sequence is replaced by one
// U+FFFD per maximal subpart (Unicode §3.9 "U+FFFD Substitution of Maximal Subparts"),
// which is what node's TextDecoder, Python's errors="replace" and HF tokenizers' Rust
// String::from_utf8_lossy all do, so the references see the same text we do.
#include "tokenizer/utf8.h"

#include <cstring>

#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist::tok {

namespace {

// Length of the well-formed sequence starting at s[i], or 0 with *bad set to the length
// of the maximal subpart to replace (>= 1).
inline size_t seq_len(const unsigned char* p, size_t n, size_t* bad) {
  const unsigned b0 = p[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  size_t k = 1;
  for (; k < need && k < n; ++k) {
    const unsigned b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (k == need) return need;
  *bad = k;
  return 0;
}

}  // namespace

size_t utf8_valid_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {  // eight ASCII bytes at a time
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (!(w & 0x8080808080808080ULL)) {
        i += 8;
        continue;
      }
    }
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t len = seq_len(p + i, n - i, &bad);
    if (!len) return i;
    i += len;
  }
  return n;
}

void utf8_sanitize_append(std::string_view s, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const size_t ok = utf8_valid_prefix(s.substr(i));
    out.append(s.data() + i, ok);
    i += ok;
    if (i >= n) break;
    size_t bad = 0;
    seq_len(p + i, n - i, &bad);
    out.append("\xEF\xBF\xBD");
    i += bad;
  }
}

void utf8_append(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace r1dist::tok

namespace r1dist {

std::string utf8_sanitize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  tok::utf8_sanitize_append(bytes, out);
  return out;
}

}  // namespace r1dist
