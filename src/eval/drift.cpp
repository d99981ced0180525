#include <ATen/ATen.h>

#include "r1dist/eval.h"

namespace r1dist {

namespace {

at::Tensor to_tensor(const std::vector<int64_t>& v, int64_t b, int64_t t, const at::Device& d) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {b, t}, at::kLong).to(d);
}

// Restores adapter_enabled = true even when a pass throws.
struct AdaptersOff {
  explicit AdaptersOff(Qwen2Model& m) : m_(m) { m_.set_adapters_enabled(false); }
  ~AdaptersOff() { m_.set_adapters_enabled(true); }
  Qwen2Model& m_;
};

}  // namespace

SumCount eval_loss(Qwen2Model& model, const std::vector<const Example*>& rows, int64_t micro_batch,
                   int32_t pad_id) {
  at::NoGradGuard no_grad;
  SumCount out;
  for (size_t i = 0; i < rows.size(); i += size_t(micro_batch)) {
    std::vector<const Example*> mb(rows.begin() + i, rows.begin() + std::min(rows.size(), i + micro_batch));
    const auto c = collate(mb, pad_id);
    const auto ids = to_tensor(c.ids, c.batch, c.seq, model.device());
    const auto labels = to_tensor(c.labels, c.batch, c.seq, model.device());
    const auto l = causal_lm_loss_sum(model.forward(ids), labels);
    out.sum += l.sum.item<double>();
    out.count += l.count;
  }
  return out;
}

SumCount kl_drift(Qwen2Model& model, const std::vector<const Example*>& rows, int64_t chunk) {
  at::NoGradGuard no_grad;
  SumCount out;
  for (const Example* ex : rows) {
    const int64_t t = static_cast<int64_t>(ex->ids.size());
    if (t < 2) continue;
    std::vector<int64_t> ids64(ex->ids.begin(), ex->ids.end());
    const auto ids = to_tensor(ids64, 1, t, model.device());
    at::Tensor h_base;
    {
      AdaptersOff off(model);
      h_base = model.hidden_states(ids);
    }
    const auto h_tuned = model.hidden_states(ids);
    // Positions 0..t-2 predict tokens 1..t-1, the positions the loss sees.
    for (int64_t s = 0; s < t - 1; s += chunk) {
      const int64_t n = std::min(chunk, t - 1 - s);
      const auto lp_b = at::log_softmax(model.lm_head(h_base.narrow(1, s, n)).to(at::kFloat), -1);
      const auto lp_t = at::log_softmax(model.lm_head(h_tuned.narrow(1, s, n)).to(at::kFloat), -1);
      out.sum += (lp_b.exp() * (lp_b - lp_t)).sum().item<double>();
      out.count += n;
    }
  }
  return out;
}

}  // namespace r1dist
