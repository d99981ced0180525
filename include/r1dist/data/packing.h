// Packing the rows of a global batch into sequences of at most data.max_seq_len tokens
// (data.packing = true). The rows a step trains on are still BatchPlan::step_rows(k): only
// how they are laid out changes, so the step's loss (the sum over its loss tokens divided by
// their count) and the row accounting (data cursor, resume) are those of the unpacked step.
//
// The rule, a pure function of (the step's rows, their lengths, capacity):
//   first-fit decreasing: the rows sorted by length, longest first (ties: earlier in the
//   global batch first), each placed in the first sequence, in creation order, that still
//   has room for it; a new sequence when none has. Inside a sequence the rows keep the
//   order they were placed in.
// The world size plays no part in it. Ranks then take whole sequences (pack_rank_share): a
// sequence goes to the rank holding the fewest tokens so far (ties: the lowest rank), the
// sequences visited longest first; a rank runs its sequences micro_batch at a time, end to
// end as one (1, T) micro-batch.
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/data/batch_plan.h"
#include "r1dist/data/dataset.h"

namespace r1dist {

struct PackedSequence {
  std::vector<int64_t> rows;  // example indices (into Dataset::train), in placement order
  int64_t tokens = 0;         // sum of their lengths (<= capacity)
};

// Packs `rows` (example indices; lengths[i] is example i's token count, each <= capacity).
std::vector<PackedSequence> pack_rows(const std::vector<int64_t>& rows, const std::vector<int64_t>& lengths,
                                      int64_t capacity);

// Rank `rank`'s micro-batches of a packed step: lists of sequences, at most micro_batch
// sequences each (a rank may get fewer micro-batches than another, or none: every rank
// still takes part in the step's all-reduce).
std::vector<std::vector<PackedSequence>> pack_rank_share(const std::vector<PackedSequence>& seqs, int rank,
                                                         int world, int64_t micro_batch);

// Rows laid end to end as one (1, T) micro-batch, T = the sum of their lengths: no padding.
// The label of each row's first token is -100 (the token before it belongs to another row,
// so nothing predicts it: as in the unpacked batch, where position 0 has no predecessor).
// row_lengths lists each row's length in order (positions restart at 0 at each row).
struct PackedCollated : Collated {
  std::vector<int64_t> row_lengths;
};
PackedCollated collate_packed(const std::vector<const Example*>& rows);

// Step `step` packed: its rows, their tokens, the sequences, and how many of `world` ranks
// get no sequence (they idle through that step's forward and backward: a global batch packs
// into few sequences when rows are short, so packing wants global batch tokens >= world x
// max_seq_len).
struct PackingSummary {
  int64_t rows = 0, tokens = 0, sequences = 0;
  int idle_ranks = 0;
};
PackingSummary summarize_packing(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths,
                                 int64_t capacity, int world);

// Tokens of a step as laid out: real = the rows' tokens, slots = the micro-batches' B x T
// summed over every rank (padding included; a packed step has none: slots == real). Every
// rank can compute it for the whole step.
struct SlotCount {
  int64_t real = 0, slots = 0;
  double padding_share() const { return slots > 0 ? 1.0 - double(real) / double(slots) : 0.0; }
};
// The unpacked layout: each micro-batch padded to its longest row.
SlotCount unpacked_slots(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths, int world,
                         int64_t micro_batch, int64_t grad_accum);

}  // namespace r1dist
