// UTF-8 helpers for the tokenizer: validity, repair (maximal-subpart replacement) and
// decoding one code point.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1dist::tok {

// Length of the longest well-formed UTF-8 prefix of s (s.size() when all of s is valid).
size_t utf8_valid_prefix(std::string_view s);
inline bool utf8_is_valid(std::string_view s) { return utf8_valid_prefix(s) == s.size(); }

// Appends s to out with each maximal ill-formed subpart replaced by U+FFFD (EF BF BD).
void utf8_sanitize_append(std::string_view s, std::string& out);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
inline char32_t utf8_next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) { ++i; return b0; }
  auto cont = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t cp;
  if (b0 < 0xE0) { cp = (char32_t(b0 & 0x1F) << 6) | cont(1); i += 2; }
  else if (b0 < 0xF0) { cp = (char32_t(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2); i += 3; }
  else { cp = (char32_t(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3); i += 4; }
  return cp;
}

// Start of the code point that ends at s[i-1] (s valid, i > 0).
inline size_t utf8_prev(std::string_view s, size_t i) {
  do { --i; } while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
  return i;
}

void utf8_append(char32_t cp, std::string& out);

}  // namespace r1dist::tok
