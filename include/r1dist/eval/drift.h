// Measurements of a model on held-out rows: loss, and drift from the base model. Drift is
// KL(base || tuned) of the next-token distributions, with the base pass computed by
// switching the adapters off (no second copy of the model).
//
// Both pack the rows into sequences of at most `capacity` tokens (data/packing.h
// pack_examples: a longer row goes alone) and run one forward per sequence. Attention never
// crosses a row and positions restart at each row, so every row is measured as if it were
// alone: the sums are those of a row-by-row evaluation up to the order of float additions.
// The sums stay on the device until the call ends: one host sync per call.
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

// Summed token NLL over the loss tokens of `rows` (labels != -100 at positions 1..T-1 of
// each row), and their count. The loss comes from the hidden states in chunks
// (model/lm_loss.h): the full logits are never held.
SumCount eval_loss(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity);

struct DriftSums {
  SumCount kl;         // summed KL(base || tuned) over next-token positions
  int64_t agree = 0;   // positions where base and tuned have the same argmax
};

// KL(base || tuned) and top-1 agreement over every next-token position of `rows`: positions
// 0..T-2 of each row (its last token would predict the next row's first: not counted; a row
// of one token has none). The vocabulary projection runs over `chunk` positions at a time to
// bound memory. The model's adapters are switched off for the base pass and back on
// afterwards.
DriftSums kl_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity,
                   int64_t chunk = 512);

// The base model's last hidden states of one list of rows, one (T, hidden) tensor per packed
// sequence, in host memory (pinned on CUDA: nothing on the device between evaluations). The
// base weights do not change while a run trains its adapters, so a run's later evaluations
// of the same rows need only the tuned pass. Filled by loss_and_drift; a cache of other rows
// is refilled.
struct BaseStates {
  std::vector<at::Tensor> per_sequence;
  uint64_t rows_key = 0;  // which rows (a hash of their tokens)
};

struct LossAndDrift {
  SumCount loss;
  DriftSums drift;
};

// eval_loss and kl_drift of the same rows from one tuned forward per packed sequence (the
// sums equal theirs up to the order of float additions), the base pass read from `base`
// when it holds these rows' sequences, computed and stored there otherwise. Valid only while
// the model's base weights stay those `base` was filled from.
LossAndDrift loss_and_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity,
                            BaseStates& base, int64_t chunk = 512);

}  // namespace r1dist
