// GPT-2 byte-level mapping (what HF ByteLevel uses): every byte is shown as one printable code point so
// that BPE tokens are strings. Bytes 33..126, 161..172, 174..255 map to themselves; the
// other 68 bytes, in increasing order, map to U+0100, U+0101, ...
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1dist::tok {

// byte -> code point
const std::array<char32_t, 256>& byte_to_unicode();
// code point -> byte, or -1 when the code point is not in the table
int unicode_to_byte(char32_t cp);

// The byte-level string (UTF-8) for raw bytes: "Ġhello" for " hello".
std::string bytes_to_token(std::string_view bytes);

// The raw bytes a token stands for: every code point mapped back through the table when
// all of them are in it, else the token's own UTF-8 (HF's ByteLevel decoder rule, which is
// how added tokens such as <｜User｜> come out as written). `token` must be valid UTF-8.
std::string token_to_bytes(std::string_view token);

}  // namespace r1dist::tok
