#include "r1dist/eval/drift.h"

#include <ATen/ATen.h>

#include "r1dist/base/error.h"
#include "r1dist/data/packing.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/peft/lora_adapters.h"
#include "r1dist/tensor/token_batch.h"

namespace r1dist {

namespace {

// One packed sequence on the device. Every sequence's inputs are copied before the first
// forward: a blocking host-to-device copy waits for the device's queue, so copying between
// forwards would stall it once per sequence.
struct DeviceSequence {
  PackedCollated rows;
  TokenBatch batch;
  PackedRows layout;
  // With `drift`: the positions that predict a token of their own row (every one but each
  // row's last), and how many.
  at::Tensor predicting;
  int64_t n_predicting = 0;
};

std::vector<DeviceSequence> to_device_sequences(const Qwen2Model& model, const std::vector<const Example*>& rows,
                                                int64_t capacity, bool drift) {
  check(capacity > 0, "held-out evaluation: the packing capacity must be > 0, got " + std::to_string(capacity));
  std::vector<DeviceSequence> out;
  for (const auto& seq : pack_examples(rows, capacity)) {
    DeviceSequence s;
    s.rows = collate_packed(seq);
    s.batch = to_device(s.rows, model.device());
    s.layout = packed_rows(s.rows.row_lengths, model.device(), model.dtype());
    if (drift) {
      std::vector<int64_t> positions;
      int64_t start = 0;
      for (int64_t n : s.rows.row_lengths) {
        for (int64_t i = 0; i + 1 < n; ++i) positions.push_back(start + i);
        start += n;
      }
      s.n_predicting = static_cast<int64_t>(positions.size());
      s.predicting = at::tensor(positions, at::TensorOptions().dtype(at::kLong)).to(model.device());
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Adds the KL(base || tuned) and top-1 agreements of `s`'s predicting positions to `kl` and
// `agree`, from the two passes' hidden states (T, hidden), `chunk` positions at a time.
void add_drift(const Qwen2Model& model, const DeviceSequence& s, const at::Tensor& h_base, const at::Tensor& h_tuned,
               int64_t chunk, at::Tensor& kl, at::Tensor& agree) {
  const int64_t n = s.n_predicting;
  chunk = vocab_chunk_tokens(chunk, model.lm_head_weight().size(0), h_base.device());
  for (int64_t from = 0; from < n; from += chunk) {
    const auto idx = s.predicting.narrow(0, from, std::min(chunk, n - from));
    const auto lp_b = at::log_softmax(model.lm_head(h_base.index_select(0, idx)).to(at::kFloat), -1);
    const auto lp_t = at::log_softmax(model.lm_head(h_tuned.index_select(0, idx)).to(at::kFloat), -1);
    kl.add_((lp_b.exp() * (lp_b - lp_t)).sum());
    agree.add_(lp_b.argmax(-1).eq(lp_t.argmax(-1)).sum());
  }
}

at::Tensor base_hidden(const Qwen2Model& model, const DeviceSequence& s) {
  AdaptersOff off(model.lora());
  return model.hidden_states(s.batch.ids, s.layout)[0];  // (T, hidden)
}

}  // namespace

SumCount eval_loss(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity) {
  at::NoGradGuard no_grad;
  SumCount out;
  auto sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(model.device()));
  for (const auto& s : to_device_sequences(model, rows, capacity, /*drift=*/false)) {
    // Each row's first label is -100 (collate_packed): the position before it, the previous
    // row's last, adds nothing.
    sum.add_(chunked_lm_loss_sum(model.hidden_states(s.batch.ids, s.layout), model.lm_head_weight(), s.batch.labels));
    out.count += s.rows.loss_tokens;
  }
  out.sum = sum.item<double>();
  return out;
}

DriftSums kl_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity, int64_t chunk) {
  check(chunk > 0, "kl_drift: chunk must be > 0");
  at::NoGradGuard no_grad;
  DriftSums out;
  auto sums = at::zeros({2}, at::TensorOptions().dtype(at::kDouble).device(model.device()));  // KL, agreements
  auto kl = sums.select(0, 0), agree = sums.select(0, 1);
  for (const auto& s : to_device_sequences(model, rows, capacity, /*drift=*/true)) {
    if (s.n_predicting == 0) continue;
    const auto h_base = base_hidden(model, s);
    add_drift(model, s, h_base, model.hidden_states(s.batch.ids, s.layout)[0], chunk, kl, agree);
    out.kl.count += s.n_predicting;
  }
  const auto host = sums.cpu();
  out.kl.sum = host[0].item<double>();
  out.agree = static_cast<int64_t>(host[1].item<double>());
  return out;
}

LossAndDrift loss_and_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t capacity,
                            BaseStates& base, int64_t chunk) {
  check(chunk > 0, "loss_and_drift: chunk must be > 0");
  at::NoGradGuard no_grad;
  LossAndDrift out;
  auto sums = at::zeros({3}, at::TensorOptions().dtype(at::kDouble).device(model.device()));  // loss, KL, agreements
  auto loss = sums.select(0, 0), kl = sums.select(0, 1), agree = sums.select(0, 2);
  const auto seqs = to_device_sequences(model, rows, capacity, /*drift=*/true);
  // The rows the cache holds, by their tokens (FNV-1a over each row's length and ids).
  uint64_t key = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { key = (key ^ v) * 1099511628211ull; };
  for (const Example* x : rows) {
    mix(x->ids.size());
    for (int32_t id : x->ids) mix(uint32_t(id));
  }
  const bool cached = base.rows_key == key && base.per_sequence.size() == seqs.size();
  if (!cached) base.per_sequence.clear();
  base.rows_key = key;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto& s = seqs[i];
    at::Tensor h_base;
    if (cached) {
      h_base = base.per_sequence[i].to(at::TensorOptions().device(model.device()), /*non_blocking=*/true);
    } else {
      h_base = base_hidden(model, s);
      at::Tensor host = h_base;
      if (h_base.is_cuda()) {
        host = at::empty(h_base.sizes(), h_base.options().device(at::kCPU).pinned_memory(true));
        host.copy_(h_base);
      }
      base.per_sequence.push_back(host);
    }
    const auto h_tuned = model.hidden_states(s.batch.ids, s.layout);  // (1, T, hidden)
    // Each row's first label is -100 (collate_packed), as in eval_loss.
    loss.add_(chunked_lm_loss_sum(h_tuned, model.lm_head_weight(), s.batch.labels));
    out.loss.count += s.rows.loss_tokens;
    if (s.n_predicting == 0) continue;
    add_drift(model, s, h_base, h_tuned[0], chunk, kl, agree);
    out.drift.kl.count += s.n_predicting;
  }
  const auto host = sums.cpu();
  out.loss.sum = host[0].item<double>();
  out.drift.kl.sum = host[1].item<double>();
  out.drift.agree = static_cast<int64_t>(host[2].item<double>());
  return out;
}

}  // namespace r1dist
