// AdamW on the flat fp32 LoRA buffer, global-norm clipping and the learning-rate schedule.
// Semantics follow torch.optim.AdamW and transformers' get_*_schedule_with_warmup, so a
// run here and the peer Python recipe see the same learning rates step by step.
#pragma once
#include <ATen/Tensor.h>

#include <cstdint>

#include "r1dist/config/config.h"

namespace r1dist {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class AdamW {
 public:
  // State (exp_avg, exp_avg_sq) like `params`: fp32, same device, zero.
  AdamW(const at::Tensor& params, AdamWConfig cfg);
  // One update of `params` in place from `grad` (decoupled weight decay, bias correction).
  void step(at::Tensor& params, const at::Tensor& grad, double lr);
  at::Tensor& exp_avg() { return m_; }
  at::Tensor& exp_avg_sq() { return v_; }
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWConfig cfg_;
  at::Tensor m_, v_;
  int64_t t_ = 0;
};

// L2 norm of `grad` (fp64 accumulation); scales grad in place by max_norm / (norm + 1e-6)
// when the norm exceeds max_norm > 0 (torch.nn.utils.clip_grad_norm_). Returns the norm
// before clipping as an fp64 scalar on grad's device: no host sync.
at::Tensor clip_grad_norm(at::Tensor& grad, double max_norm);

// Learning rate of optimizer step `step` (0-based) of `total`: linear warmup from 0 over
// `warmup` steps, then linear to 0, cosine to 0, or constant.
double lr_at(Schedule schedule, double peak, int64_t step, int64_t warmup, int64_t total);

AdamWConfig adamw_config(const TrainConfig& t);

}  // namespace r1dist
