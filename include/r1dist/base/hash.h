// Stable 64-bit FNV-1a hash: the same on every compiler and machine (std::hash is not), for
// seeds derived from names and for cache keys.
#pragma once
#include <cstdint>
#include <string_view>

namespace r1dist {

inline uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace r1dist
