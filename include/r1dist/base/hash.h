// Stable 64-bit hashes: the same on every compiler and machine (std::hash is not).
#pragma once
#include <cstdint>
#include <string_view>

namespace r1dist {

// FNV-1a 64 (offset basis 14695981039346656037, prime 1099511628211), as published.
inline uint64_t fnv1a64(std::string_view s, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// FNV-1a's step from another offset basis (1469598103934665603, one digit short of FNV's).
// Not FNV-1a, but its values are part of stored formats (data fingerprints, the tokenized
// cache's checksum, seeds of adapters and init-model weights, checkpoints' model identity),
// so it keeps them: use it where those values must stay, fnv1a64 anywhere new.
inline uint64_t stable_hash64(std::string_view s, uint64_t h = 1469598103934665603ull) { return fnv1a64(s, h); }

}  // namespace r1dist
