// CRC-32 (zlib's, the polynomial of gzip and PNG) of bytes: the integrity check of
// checkpoints, exported adapters and the tokenized-data cache. zlib is already on every
// machine (HDF5 depends on it) and runs at GB/s; CRC-32 detects every error within 32
// consecutive bits and any single flipped byte: damage, not tampering, is what it guards.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1dist {

// Continues `crc` (0 to start) over the bytes.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t crc32(std::string_view s, uint32_t crc = 0) { return crc32(s.data(), s.size(), crc); }
// The CRC-32 of a whole file ("" and false when it cannot be read; `why` says why).
bool file_crc32(const std::string& path, uint32_t* crc, uint64_t* size, std::string* why = nullptr);
// 8 lower-case hex digits.
std::string crc32_hex(uint32_t crc);

}  // namespace r1dist
