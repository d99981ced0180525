#include "r1dist/eval/drift.h"

#include <ATen/ATen.h>

#include "r1dist/data/batch_plan.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/peft/lora_adapters.h"
#include "r1dist/tensor/token_batch.h"

namespace r1dist {

SumCount eval_loss(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t micro_batch,
                   int32_t pad_id) {
  at::NoGradGuard no_grad;
  SumCount out;
  for (size_t i = 0; i < rows.size(); i += size_t(micro_batch)) {
    std::vector<const Example*> mb(rows.begin() + i, rows.begin() + std::min(rows.size(), i + micro_batch));
    const auto b = to_device(collate(mb, pad_id), model.device());
    out.sum += causal_lm_loss_sum(model.forward(b.ids), b.labels).item<double>();
    out.count += b.loss_tokens;
  }
  return out;
}

DriftSums kl_drift(const Qwen2Model& model, const std::vector<const Example*>& rows, int64_t chunk) {
  at::NoGradGuard no_grad;
  DriftSums out;
  for (const Example* ex : rows) {
    const int64_t t = static_cast<int64_t>(ex->ids.size());
    if (t < 2) continue;
    const auto ids = to_device(collate({ex}, 0), model.device()).ids;
    at::Tensor h_base;
    {
      AdaptersOff off(model.lora());
      h_base = model.hidden_states(ids);
    }
    const auto h_tuned = model.hidden_states(ids);
    // Positions 0..t-2 predict tokens 1..t-1, the positions the loss sees.
    for (int64_t s = 0; s < t - 1; s += chunk) {
      const int64_t n = std::min(chunk, t - 1 - s);
      const auto lp_b = at::log_softmax(model.lm_head(h_base.narrow(1, s, n)).to(at::kFloat), -1);
      const auto lp_t = at::log_softmax(model.lm_head(h_tuned.narrow(1, s, n)).to(at::kFloat), -1);
      out.kl.sum += (lp_b.exp() * (lp_b - lp_t)).sum().item<double>();
      out.kl.count += n;
      out.agree += lp_b.argmax(-1).eq(lp_t.argmax(-1)).sum().item<int64_t>();
    }
  }
  return out;
}

}  // namespace r1dist
