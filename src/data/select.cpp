// Row selection: the first N rows or a seeded random N, then a held-out eval split drawn
// (seeded) from the selected rows. Both lists are sorted by row so metadata reads in file
// order; the batch order is shuffled later by BatchPlan.
#include "r1dist/data/select.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/data_internal.h"

namespace r1dist {

Split select_rows(int64_t n_rows, const DataConfig& cfg, uint64_t seed) {
  const int64_t n = cfg.n_samples == 0 ? n_rows : cfg.n_samples;
  if (cfg.n_samples < 0) throw UsageError("data.n_samples = " + std::to_string(cfg.n_samples) + " must be >= 0");
  if (n > n_rows)
    throw UsageError("data.n_samples = " + std::to_string(n) + " but " + (cfg.path.empty() ? "the data" : cfg.path) +
                     " has only " + std::to_string(n_rows) +
                     " usable rows\nHINT: lower data.n_samples, or set it to 0 for every row");
  std::vector<int64_t> chosen(static_cast<size_t>(n_rows));
  std::iota(chosen.begin(), chosen.end(), 0);
  if (cfg.sample == SampleMode::random) {
    data::SplitMix64 rng(data::derive_seed(seed, "data.sample"));
    data::shuffle(chosen, rng);
  }
  chosen.resize(static_cast<size_t>(n));

  int64_t n_eval = cfg.eval_rows;
  if (cfg.eval_fraction > 0) n_eval = std::max<int64_t>(1, std::llround(cfg.eval_fraction * double(n)));
  if (n_eval < 0 || n_eval >= n)
    throw UsageError("the eval split asks for " + std::to_string(n_eval) + " of " + std::to_string(n) +
                     " selected rows; at least one must stay for training\nHINT: lower data.eval_rows or "
                     "data.eval_fraction, or raise data.n_samples");
  // Eval rows: a seeded draw from the selected rows (not simply the last ones, which with
  // sample = "first" would all come from the end of the file).
  std::vector<int64_t> order = chosen;
  data::SplitMix64 rng(data::derive_seed(seed, "data.eval"));
  data::shuffle(order, rng);
  Split s;
  s.eval.assign(order.begin(), order.begin() + n_eval);
  s.train.assign(order.begin() + n_eval, order.end());
  std::sort(s.eval.begin(), s.eval.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace r1dist
