#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace r1dist::tok {

const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

int unicode_to_byte(char32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return int(cp);
  if (cp < 0x100 || cp >= 0x100 + 68) return -1;
  static const std::array<int16_t, 68> inverse = [] {
    std::array<int16_t, 68> inv{};
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b)
      if (t[b] >= 0x100) inv[t[b] - 0x100] = int16_t(b);
    return inv;
  }();
  return inverse[cp - 0x100];
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  const auto& t = byte_to_unicode();
  for (unsigned char b : bytes) utf8_append(t[b], out);
  return out;
}

std::string token_to_bytes(std::string_view token) {
  std::string out;
  size_t i = 0;
  while (i < token.size()) {
    const int b = unicode_to_byte(utf8_next(token, i));
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace r1dist::tok
