// The global batch order, sliced per rank, and the padding of a micro-batch. Nothing here
// depends on the world size except the final slice, so global step k holds the same rows
// for 1, 2 or 8 ranks.
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/data/dataset.h"

namespace r1dist {

// The stream of training rows is one seeded permutation of the train examples per epoch,
// concatenated; global step k takes stream positions [k*G, (k+1)*G) where
// G = micro_batch * grad_accum * world. With group_by_length, each window of 64 global
// batches (counted from the epoch's start) is sorted by length and its full batches
// shuffled (seeded). When n is not a multiple of G, a step spans two epochs.
// A pure function of (lengths, seed, G, group_by_length): resuming needs only the step.
class BatchPlan {
 public:
  BatchPlan(std::vector<int64_t> lengths, uint64_t seed, int64_t global_batch, bool group_by_length);
  int64_t global_batch() const { return global_batch_; }
  int64_t steps_per_epoch() const;  // ceil(n / G)
  // Example indices (into Dataset::train) of global step `step`, in order; size G.
  std::vector<int64_t> step_rows(int64_t step) const;
  // Rank `rank`'s micro-batches of global step `step`: grad_accum lists of micro_batch
  // indices. Rank r takes the contiguous slice [r*m*a, (r+1)*m*a) of step_rows(step).
  std::vector<std::vector<int64_t>> rank_micro_batches(int64_t step, int rank, int world,
                                                       int64_t micro_batch, int64_t grad_accum) const;

 private:
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  std::vector<int64_t> lengths_;
  uint64_t seed_;
  int64_t global_batch_;
  bool group_;
};

// The optimizer steps of train.epochs passes over `rows` training rows at `global_batch` rows
// per step: ceil(epochs x rows / global_batch), at least 1 (the stream above runs the epochs
// back to back; a fractional epoch stops part-way through a pass).
int64_t steps_for_epochs(double epochs, int64_t rows, int64_t global_batch);

// A padded micro-batch as plain vectors (row-major B x T); the torch layer makes tensors
// (model/token_batch.h). Right padding with pad_id and label -100, so causal attention
// needs no mask.
struct Collated {
  int64_t batch = 0, seq = 0;
  std::vector<int64_t> ids, labels;
  int64_t loss_tokens = 0;  // labels != -100 after the shift (positions 1..T-1)
  int64_t tokens = 0;       // real (non-pad) tokens
};
Collated collate(const std::vector<const Example*>& rows, int32_t pad_id);

}  // namespace r1dist
