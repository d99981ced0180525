// Packing a global batch: rows balanced over the ranks, each rank's rows first-fit decreasing
// into sequences; the ranks' shares, the packed collate and the per-rank loads.
#include "r1dist/data/packing.h"

#include <algorithm>
#include <limits>
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

std::vector<std::vector<const Example*>> pack_examples(const std::vector<const Example*>& rows, int64_t capacity) {
  if (capacity <= 0) throw UsageError("pack_examples: capacity " + std::to_string(capacity) + " must be > 0");
  std::vector<int64_t> fit, lengths;
  std::vector<std::vector<const Example*>> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto n = static_cast<int64_t>(rows[i]->ids.size());
    lengths.push_back(n);
    if (n > capacity) out.push_back({rows[i]});
    else if (n > 0) fit.push_back(int64_t(i));
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a[0]->ids.size() > b[0]->ids.size(); });
  for (const auto& s : pack_rows(fit, lengths, capacity)) {
    out.emplace_back();
    for (int64_t i : s.rows) out.back().push_back(rows[size_t(i)]);
  }
  return out;
}

std::vector<std::vector<PackedSequence>> pack_step(const std::vector<int64_t>& rows, const std::vector<int64_t>& lengths,
                                                   int64_t capacity, int world) {
  if (world <= 0) throw UsageError("pack_step: world " + std::to_string(world) + " must be > 0");
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto len = [&](size_t i) {
    const int64_t row = rows[i];
    return row >= 0 && size_t(row) < lengths.size() ? lengths[size_t(row)] : 0;  // pack_rows names a bad row
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
  std::vector<int64_t> load(size_t(world), 0);
  std::vector<std::vector<int64_t>> mine{size_t(world)};
  for (size_t i : order) {
    const auto r = size_t(std::min_element(load.begin(), load.end()) - load.begin());  // first minimum
    load[r] += len(i);
    mine[r].push_back(rows[i]);
  }
  std::vector<std::vector<PackedSequence>> out;
  out.reserve(size_t(world));
  for (const auto& r : mine) out.push_back(pack_rows(r, lengths, capacity));
  return out;
}

std::vector<std::vector<PackedSequence>> pack_rank_share(const std::vector<int64_t>& rows,
                                                         const std::vector<int64_t>& lengths, int64_t capacity,
                                                         int rank, int world, int64_t micro_batch) {
  if (world <= 0 || rank < 0 || rank >= world || micro_batch <= 0)
    throw UsageError("pack_rank_share: rank " + std::to_string(rank) + " of world " + std::to_string(world) +
                     ", micro_batch " + std::to_string(micro_batch));
  const auto mine = std::move(pack_step(rows, lengths, capacity, world)[size_t(rank)]);
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
  PackingSummary s;
  s.rows = int64_t(rows.size());
  s.min_rank_tokens = std::numeric_limits<int64_t>::max();
  for (const auto& rank : pack_step(rows, lengths, capacity, world)) {
    int64_t tokens = 0;
    for (const auto& q : rank) tokens += q.tokens;
    s.sequences += int64_t(rank.size());
    s.tokens += tokens;
    s.min_rank_tokens = std::min(s.min_rank_tokens, tokens);
    s.max_rank_tokens = std::max(s.max_rank_tokens, tokens);
    s.idle_ranks += rank.empty();
  }
  return s;
}

SlotCount unpacked_slots(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths, int world,
                         int64_t micro_batch, int64_t grad_accum) {
  const auto loads = rank_loads(plan, step, lengths, world, micro_batch, grad_accum, false, 0);
  SlotCount n;
  for (size_t r = 0; r < loads.real.size(); ++r) n.real += loads.real[r], n.slots += loads.slots[r];
  return n;
}

int64_t RankLoads::max_slots() const { return slots.empty() ? 0 : *std::max_element(slots.begin(), slots.end()); }

double RankLoads::balance() const {
  const int64_t most = max_slots();
  if (most == 0) return 1.0;
  return double(std::accumulate(slots.begin(), slots.end(), int64_t{0})) / (double(slots.size()) * double(most));
}

RankLoads rank_loads(const BatchPlan& plan, int64_t step, const std::vector<int64_t>& lengths, int world,
                     int64_t micro_batch, int64_t grad_accum, bool packing, int64_t capacity) {
  RankLoads l;
  l.real.assign(size_t(world), 0);
  l.slots.assign(size_t(world), 0);
  if (packing) {
    const auto ranks = pack_step(plan.step_rows(step), lengths, capacity, world);
    for (size_t r = 0; r < ranks.size(); ++r)
      for (const auto& s : ranks[r]) l.real[r] += s.tokens;
    l.slots = l.real;
    return l;
  }
  for (int r = 0; r < world; ++r)
    for (const auto& mb : plan.rank_micro_batches(step, r, world, micro_batch, grad_accum)) {
      int64_t longest = 0;
      for (int64_t i : mb) {
        l.real[size_t(r)] += lengths[size_t(i)];
        longest = std::max(longest, lengths[size_t(i)]);
      }
      l.slots[size_t(r)] += longest * int64_t(mb.size());
    }
  return l;
}

}  // namespace r1dist
