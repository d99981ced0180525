// First-fit-decreasing packing of a global batch, the ranks' shares, and the packed collate.
#include "r1dist/data/packing.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "r1dist/base/error.h"

namespace r1dist {

std::vector<PackedSequence> pack_rows(const std::vector<int64_t>& rows, const std::vector<int64_t>& lengths,
                                      int64_t capacity) {
  if (capacity <= 0) throw UsageError("pack_rows: capacity " + std::to_string(capacity) + " must be > 0");
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto len = [&](size_t i) {
    const int64_t row = rows[i];
    if (row < 0 || size_t(row) >= lengths.size())
      throw UsageError("pack_rows: row " + std::to_string(row) + " outside the " + std::to_string(lengths.size()) +
                       " examples");
    return lengths[size_t(row)];
  };
  for (size_t i : order)
    if (len(i) > capacity || len(i) <= 0)
      throw UsageError("pack_rows: example " + std::to_string(rows[i]) + " has " + std::to_string(len(i)) +
                       " tokens; a packed sequence holds 1 to " + std::to_string(capacity));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
  std::vector<PackedSequence> seqs;
  for (size_t i : order) {
    const int64_t n = len(i);
    auto fit = std::find_if(seqs.begin(), seqs.end(), [&](const PackedSequence& s) { return s.tokens + n <= capacity; });
    if (fit == seqs.end()) fit = seqs.insert(seqs.end(), PackedSequence{});
    fit->rows.push_back(rows[i]);
    fit->tokens += n;
  }
  return seqs;
}

std::vector<std::vector<PackedSequence>> pack_rank_share(const std::vector<PackedSequence>& seqs, int rank,
                                                         int world, int64_t micro_batch) {
  if (world <= 0 || rank < 0 || rank >= world || micro_batch <= 0)
    throw UsageError("pack_rank_share: rank " + std::to_string(rank) + " of world " + std::to_string(world) +
                     ", micro_batch " + std::to_string(micro_batch));
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].tokens > seqs[b].tokens; });
  std::vector<int64_t> load(size_t(world), 0);
  std::vector<PackedSequence> mine;
  for (size_t i : order) {
    const auto r = size_t(std::min_element(load.begin(), load.end()) - load.begin());  // first minimum
    load[r] += seqs[i].tokens;
    if (int(r) == rank) mine.push_back(seqs[i]);
  }
  std::vector<std::vector<PackedSequence>> out;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (i % size_t(micro_batch) == 0) out.emplace_back();
    out.back().push_back(mine[i]);
  }
  return out;
}

PackedCollated collate_packed(const std::vector<const Example*>& rows) {
  PackedCollated c;
  c.batch = 1;
  for (const Example* x : rows) {
    const auto n = static_cast<int64_t>(x->ids.size());
    if (n == 0) continue;
    const size_t start = c.ids.size();
    c.ids.insert(c.ids.end(), x->ids.begin(), x->ids.end());
    c.labels.insert(c.labels.end(), x->labels.begin(), x->labels.end());
    c.labels[start] = -100;
    c.row_lengths.push_back(n);
    c.tokens += n;
    c.loss_tokens += loss_tokens(*x);
  }
  c.seq = c.tokens;
  return c;
}

PackingSummary summarize_packing(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths,
                                 int64_t capacity, int world) {
  const auto rows = plan.step_rows(step);
  const auto seqs = pack_rows(rows, lengths, capacity);
  PackingSummary s;
  s.rows = int64_t(rows.size());
  s.sequences = int64_t(seqs.size());
  for (const auto& q : seqs) s.tokens += q.tokens;
  s.idle_ranks = s.sequences < world ? world - int(s.sequences) : 0;
  return s;
}

SlotCount unpacked_slots(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths, int world,
                         int64_t micro_batch, int64_t grad_accum) {
  SlotCount n;
  for (int r = 0; r < world; ++r)
    for (const auto& mb : plan.rank_micro_batches(step, r, world, micro_batch, grad_accum)) {
      int64_t longest = 0;
      for (int64_t i : mb) {
        n.real += lengths[size_t(i)];
        longest = std::max(longest, lengths[size_t(i)]);
      }
      n.slots += longest * int64_t(mb.size());
    }
  return n;
}

}  // namespace r1dist
