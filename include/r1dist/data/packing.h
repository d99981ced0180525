// Packing the rows of a global batch into sequences of at most data.max_seq_len tokens
// (data.packing = true). The rows a step trains on are still BatchPlan::step_rows(k): only
// how they are laid out changes, so the step's loss (the sum over its loss tokens divided by
// their count) and the row accounting (data cursor, resume) are those of the unpacked step.
//
// The rule, a pure function of (the step's rows, their lengths, capacity, world):
//   1. rows to ranks, balanced: the rows sorted by length, longest first (ties: earlier in
//      the global batch first), each to the rank holding the fewest tokens so far (ties: the
//      lowest rank). No rank ends more than one row's length above another, so a step of
//      short rows keeps every rank busy (a rank idles only when the step has fewer rows
//      than ranks).
//   2. each rank's rows into sequences, first-fit decreasing: the rows longest first, each
//      placed in the first sequence, in creation order, that still has room for it; a new
//      sequence when none has. Inside a sequence the rows keep the order they were placed in.
// A rank runs its sequences micro_batch at a time, end to end as one (1, T) micro-batch. At
// one rank this is first-fit decreasing over the whole step. Across world sizes a step holds
// the same rows and the same loss; which rows share a sequence differs, so results agree to
// rounding, not bitwise (as the all-reduce's summation order already makes them).
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

// Rows of an evaluation (held-out loss, drift) packed into sequences of at most `capacity`
// tokens by pack_rows's rule (first-fit decreasing), except that a row longer than capacity
// (a limit other than the one the rows were cut to) is a sequence of its own, placed first,
// and an empty row is left out. Each sequence lists pointers into `rows`' examples.
std::vector<std::vector<const Example*>> pack_examples(const std::vector<const Example*>& rows, int64_t capacity);

// A packed step: ranks[r] holds rank r's sequences (rule 1 and 2 above).
std::vector<std::vector<PackedSequence>> pack_step(const std::vector<int64_t>& rows, const std::vector<int64_t>& lengths,
                                                   int64_t capacity, int world);

// Rank `rank`'s micro-batches of a packed step: its sequences, at most micro_batch per
// micro-batch (a rank may get fewer micro-batches than another, or none when the step has
// fewer rows than ranks: every rank still takes part in the step's all-reduce).
std::vector<std::vector<PackedSequence>> pack_rank_share(const std::vector<int64_t>& rows,
                                                         const std::vector<int64_t>& lengths, int64_t capacity,
                                                         int rank, int world, int64_t micro_batch);

// Rows laid end to end as one (1, T) micro-batch, T = the sum of their lengths: no padding.
// The label of each row's first token is -100 (the token before it belongs to another row,
// so nothing predicts it: as in the unpacked batch, where position 0 has no predecessor).
// row_lengths lists each row's length in order (positions restart at 0 at each row).
struct PackedCollated : Collated {
  std::vector<int64_t> row_lengths;
};
PackedCollated collate_packed(const std::vector<const Example*>& rows);

// Step `step` packed for `world` ranks: its rows, their tokens, the sequences over every
// rank, the fewest and most tokens a rank holds, and how many ranks get no row (they idle
// through that step's forward and backward).
struct PackingSummary {
  int64_t rows = 0, tokens = 0, sequences = 0;
  int64_t min_rank_tokens = 0, max_rank_tokens = 0;
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

// What a step asks of each rank, as laid out (packed or padded): real[r] and slots[r] are
// rank r's tokens and B x T slots. A step lasts as long as its busiest rank, so
// sum(slots) / (world x max(slots)) bounds the step's scaling efficiency from balance alone.
struct RankLoads {
  std::vector<int64_t> real, slots;
  int64_t max_slots() const;
  double balance() const;  // mean / max of slots (1: every rank equally busy); 1 for an empty step
};
RankLoads rank_loads(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths, int world,
                     int64_t micro_batch, int64_t grad_accum, bool packing, int64_t capacity);

}  // namespace r1dist
