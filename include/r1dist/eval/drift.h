// Measurements of a model on held-out rows: loss, and drift from the base model. Drift is
// KL(base || tuned) of the next-token distributions, with the base pass computed by
// switching the adapters off (no second copy of the model).
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/data/dataset.h"
#include "r1dist/model/qwen2.h"

namespace r1dist {

struct SumCount {
  double sum = 0;
  int64_t count = 0;
  double mean() const { return count > 0 ? sum / double(count) : 0.0; }
};

// Summed token NLL (labels != -100, shifted) over `rows`, micro_batch rows per forward.
SumCount eval_loss(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t micro_batch,
                   int32_t pad_id);

struct DriftSums {
  SumCount kl;         // summed KL(base || tuned) over next-token positions
  int64_t agree = 0;   // positions where base and tuned have the same argmax
};

// KL(base || tuned) and top-1 agreement over every next-token position of `rows` (one row
// at a time, the vocabulary projection in chunks of `chunk` positions to bound memory). The
// model's adapters are switched off for the base pass and back on afterwards.
DriftSums kl_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t chunk = 512);

}  // namespace r1dist
