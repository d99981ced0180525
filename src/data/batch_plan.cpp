// The global batch order and the per-rank slices, and dynamic padding.
#include "r1dist/data/batch_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/data_internal.h"

namespace r1dist {

namespace {
constexpr int64_t kGroupWindow = 64;  // global batches per length-grouping window
}

BatchPlan::BatchPlan(std::vector<int64_t> lengths, uint64_t seed, int64_t global_batch, bool group_by_length)
    : lengths_(std::move(lengths)), seed_(seed), global_batch_(global_batch), group_(group_by_length) {
  if (lengths_.empty()) throw UsageError("BatchPlan: no training examples");
  if (global_batch_ <= 0) throw UsageError("BatchPlan: global batch " + std::to_string(global_batch_) + " must be > 0");
}

int64_t BatchPlan::steps_per_epoch() const {
  const int64_t n = static_cast<int64_t>(lengths_.size());
  return (n + global_batch_ - 1) / global_batch_;
}

// One seeded permutation of the examples. With grouping, the permutation is cut into
// windows of 64 global batches from the start of the epoch; each window is sorted by
// length (longest first, ties in permutation order) and cut into batches of G, and the
// full batches of the window are shuffled (a partial last batch stays last).
std::vector<int64_t> BatchPlan::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(lengths_.size());
  std::iota(order.begin(), order.end(), 0);
  data::SplitMix64 rng(data::derive_seed(seed_, "data.epoch", static_cast<uint64_t>(epoch)));
  data::shuffle(order, rng);
  if (!group_) return order;
  const size_t G = static_cast<size_t>(global_batch_), window = G * kGroupWindow;
  for (size_t w0 = 0; w0 < order.size(); w0 += window) {
    const auto first = order.begin() + static_cast<ptrdiff_t>(w0);
    const auto last = order.begin() + static_cast<ptrdiff_t>(std::min(order.size(), w0 + window));
    std::stable_sort(first, last, [&](int64_t a, int64_t b) { return lengths_[a] > lengths_[b]; });
    const size_t n = static_cast<size_t>(last - first), full = n / G;
    std::vector<size_t> batches(full);
    std::iota(batches.begin(), batches.end(), 0);
    data::SplitMix64 brng(data::derive_seed(seed_, "data.group", static_cast<uint64_t>(epoch), w0 / window));
    data::shuffle(batches, brng);
    std::vector<int64_t> sorted(first, last);
    for (size_t b = 0; b < full; ++b)
      std::copy_n(sorted.begin() + static_cast<ptrdiff_t>(batches[b] * G), G, first + static_cast<ptrdiff_t>(b * G));
  }
  return order;
}

std::vector<int64_t> BatchPlan::step_rows(int64_t step) const {
  if (step < 0) throw UsageError("BatchPlan: step " + std::to_string(step) + " < 0");
  const int64_t n = static_cast<int64_t>(lengths_.size());
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(global_batch_));
  int64_t epoch = -1;
  std::vector<int64_t> order;
  for (int64_t pos = step * global_batch_; pos < (step + 1) * global_batch_; ++pos) {
    if (pos / n != epoch) order = epoch_order(epoch = pos / n);
    rows.push_back(order[static_cast<size_t>(pos % n)]);
  }
  return rows;
}

std::vector<std::vector<int64_t>> BatchPlan::rank_micro_batches(int64_t step, int rank, int world, int64_t micro_batch,
                                                                int64_t grad_accum) const {
  if (micro_batch <= 0 || grad_accum <= 0 || world <= 0 || micro_batch * grad_accum * world != global_batch_)
    throw UsageError("BatchPlan: micro_batch " + std::to_string(micro_batch) + " x grad_accum " +
                     std::to_string(grad_accum) + " x world " + std::to_string(world) + " != global batch " +
                     std::to_string(global_batch_));
  if (rank < 0 || rank >= world)
    throw UsageError("BatchPlan: rank " + std::to_string(rank) + " outside [0, " + std::to_string(world) + ")");
  const auto rows = step_rows(step);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(grad_accum));
  const int64_t base = rank * micro_batch * grad_accum;
  for (int64_t a = 0; a < grad_accum; ++a)
    out[static_cast<size_t>(a)].assign(rows.begin() + base + a * micro_batch, rows.begin() + base + (a + 1) * micro_batch);
  return out;
}

Collated collate(const std::vector<const Example*>& rows, int32_t pad_id) {
  Collated c;
  c.batch = static_cast<int64_t>(rows.size());
  for (const Example* x : rows) c.seq = std::max<int64_t>(c.seq, static_cast<int64_t>(x->ids.size()));
  c.ids.assign(static_cast<size_t>(c.batch * c.seq), pad_id);
  c.labels.assign(c.ids.size(), -100);
  for (int64_t b = 0; b < c.batch; ++b) {
    const Example& x = *rows[static_cast<size_t>(b)];
    std::copy(x.ids.begin(), x.ids.end(), c.ids.begin() + b * c.seq);
    std::copy(x.labels.begin(), x.labels.end(), c.labels.begin() + b * c.seq);
    c.tokens += static_cast<int64_t>(x.ids.size());
    c.loss_tokens += loss_tokens(x);
  }
  return c;
}

int64_t steps_for_epochs(double epochs, int64_t rows, int64_t global_batch) {
  const double steps = std::ceil(epochs * double(rows) / double(global_batch) - 1e-9);
  return std::max<int64_t>(1, static_cast<int64_t>(steps));
}

}  // namespace r1dist
