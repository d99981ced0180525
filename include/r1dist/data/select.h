// Which loaded rows train and which are held out: the first N or a seeded random N, and a
// held-out split drawn from them. The same on every compiler (splitmix64 + Fisher-Yates).
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/config/config.h"

namespace r1dist {

// Indices into the load_rows vector. Train and eval never overlap; data.n_samples = 0 means
// every row. Throws UsageError when more rows are requested than exist.
struct Split {
  std::vector<int64_t> train, eval;
};
Split select_rows(int64_t n_rows, const DataConfig& cfg, uint64_t seed);

}  // namespace r1dist
