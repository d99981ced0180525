#include "r1dist/train/optim.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "r1dist/base/error.h"

namespace r1dist {

AdamW::AdamW(const at::Tensor& params, AdamWConfig cfg)
    : cfg_(cfg), m_(at::zeros_like(params)), v_(at::zeros_like(params)) {
  check(params.scalar_type() == at::kFloat, "AdamW: parameters must be float32");
}

void AdamW::step(at::Tensor& p, const at::Tensor& g, double lr) {
  ++t_;
  // torch.optim.AdamW (single-tensor path): decay, moments, bias-corrected update.
  p.mul_(1.0 - lr * cfg_.weight_decay);
  m_.lerp_(g, 1.0 - cfg_.beta1);
  v_.mul_(cfg_.beta2).addcmul_(g, g, 1.0 - cfg_.beta2);
  const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
  auto denom = (v_.sqrt() / std::sqrt(bc2)).add_(cfg_.eps);
  p.addcdiv_(m_, denom, -lr / bc1);
}

at::Tensor clip_grad_norm(at::Tensor& grad, double max_norm) {
  const auto norm = grad.to(at::kDouble).norm();
  if (max_norm > 0) {
    // min(1, max_norm / (norm + eps)) on the device; a factor of exactly 1 leaves grad as is.
    const auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
    grad.mul_(coef.to(grad.scalar_type()));
  }
  return norm;
}

double lr_at(Schedule schedule, double peak, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return peak * double(step) / double(std::max<int64_t>(1, warmup));
  const double span = double(std::max<int64_t>(1, total - warmup));
  const double progress = double(step - warmup) / span;
  switch (schedule) {
    case Schedule::linear: return peak * std::max(0.0, double(total - step) / span);
    case Schedule::cosine: return peak * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
    case Schedule::constant: return peak;
  }
  return peak;
}

AdamWConfig adamw_config(const TrainConfig& t) {
  return AdamWConfig{t.adam_beta1, t.adam_beta2, t.adam_eps, t.weight_decay};
}

}  // namespace r1dist
