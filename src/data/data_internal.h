// Pieces shared by the data pipeline's source files (src/data/*.cpp): reading a file, the
// row parser over an in-memory buffer, and the seeded random numbers every stage uses.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "r1dist/data/loader.h"

namespace r1dist::data {

// Rows whose text (every turn's content and reasoning) exceeds this are bad rows (data.on_bad_row).
constexpr size_t kMaxRowBytes = size_t(1) << 20;

// Whether the bytes are a JSON array of rows (the first non-blank byte, after a UTF-8 BOM, is
// '['); otherwise they are JSON Lines.
bool is_json_array(std::string_view bytes);

// Whole file as bytes; throws DataError naming the file.
std::string read_file(const std::string& path);

// load_rows() on bytes already read; `path` only names the file in messages.
std::vector<Row> parse_rows(const DataConfig& cfg, const std::string& path, std::string_view bytes,
                            LoadReport* report);

// splitmix64: a tiny, fully specified generator, so that selection and batch order are the
// same with every compiler and standard library (std::shuffle and the std distributions
// are not specified bit for bit).
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) by rejection (no modulo bias); n > 0.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next(); while (x >= limit);
    return x % n;
  }
};

// A stream seed for (seed, purpose, a, b): distinct purposes never share a stream.
uint64_t derive_seed(uint64_t seed, std::string_view purpose, uint64_t a = 0, uint64_t b = 0);

// Fisher-Yates over v with rng.
template <class T>
void shuffle(std::vector<T>& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

}  // namespace r1dist::data

namespace r1dist::data {
// log::warn of the skipped-row count and the first reasons (nothing when none skipped).
void log_skipped(const LoadReport& rep, const std::string& path);
}  // namespace r1dist::data
