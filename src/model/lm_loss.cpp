#include "r1dist/model/lm_loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "r1dist/base/error.h"
#include "r1dist/tensor/fused_ops.h"

namespace r1dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Shifted rows: position t of every sequence predicts label t + 1.
struct Shifted {
  at::Tensor h;       // (N, H), N = B * (T - 1)
  at::Tensor target;  // (N) int64, ignored positions clamped to 0
  at::Tensor valid;   // (N) fp32, 1 where the label counts
};

Shifted shift(const at::Tensor& hidden, const at::Tensor& labels) {
  const int64_t b = hidden.size(0), t = hidden.size(1), hs = hidden.size(2);
  Shifted s;
  s.h = hidden.narrow(1, 0, t - 1).reshape({b * (t - 1), hs});
  const auto y = labels.narrow(1, 1, t - 1).reshape({-1}).to(hidden.device(), at::kLong);
  const auto keep = y.ne(-100);
  s.target = y.clamp_min(0);
  s.valid = keep.to(at::kFloat);
  return s;
}

// One chunk's logits as lm_head computes them (in the compute dtype), in `out` (c, V): straight
// into it when it has h's dtype, through the compute dtype into an fp32 `out` otherwise.
void chunk_logits(at::Tensor& out, const at::Tensor& h, const at::Tensor& weight) {
  if (out.scalar_type() == h.scalar_type()) at::mm_out(out, h, weight.t());
  else out.copy_(at::linear(h, weight));
}

// One (chunk, V) buffer per pass, which lm_head writes and tensor/fused_ops.h's
// logsumexp_and_target and softmax_grad_ work on. Where their kernels run (CUDA) it is in the
// compute dtype: no fp32 copy of the logits and one kernel per pass instead of ATen's seven
// (the cast, max, subtract, exp, sum, and in the backward subtract, exp, scatter, multiply,
// cast): 25 ms of elementwise kernels in a 1.5B step of 8192 tokens (docs/PERFORMANCE.md).
// Elsewhere it is fp32 and their ATen steps run in place in it: fewer passes over the logits
// than logsumexp's temporaries, and on the CPU, where a command hands freed memory back to the
// system (all but training: train/build_run.cpp), no page faults for a fresh buffer per chunk
// (`bench loss --device cpu --preset tiny`, 2,792 tokens in chunks of 1,024: 21.5 s before,
// 6.1 s after).
struct ChunkedLmLoss : public torch::autograd::Function<ChunkedLmLoss> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, int64_t chunk) {
    const auto s = shift(hidden, labels);
    const int64_t n = s.h.size(0);
    const auto f32 = hidden.options().dtype(at::kFloat);
    const bool kernels = fused::kernels_available(hidden.device());
    auto total = at::zeros({}, f32);
    auto lse = at::empty({n}, f32);  // per token, for the backward
    auto buf = at::empty({std::min(chunk, n), weight.size(0)}, kernels ? hidden.options() : f32);
    for (int64_t i = 0; i < n; i += chunk) {
      const int64_t c = std::min(chunk, n - i);
      auto logits = buf.narrow(0, 0, c);
      auto l = lse.narrow(0, i, c);
      const auto target = s.target.narrow(0, i, c);
      chunk_logits(logits, s.h.narrow(0, i, c), weight);
      const auto [part, tgt] = fused::logsumexp_and_target(logits, target);
      l.copy_(part);
      total.add_(((l - tgt) * s.valid.narrow(0, i, c)).sum());
    }
    ctx->save_for_backward({hidden, weight, labels, lse});
    ctx->saved_data["chunk"] = chunk;
    return total;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &hidden = saved[0], &weight = saved[1], &labels = saved[2], &lse = saved[3];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto s = shift(hidden, labels);
    const int64_t n = s.h.size(0);
    const bool kernels = fused::kernels_available(hidden.device());
    const auto g = grads[0].to(at::kFloat);
    auto grad_h = at::zeros_like(hidden);
    auto grad_rows = grad_h.narrow(1, 0, hidden.size(1) - 1);  // (B, T-1, H) view
    auto grad_flat = at::empty({n, hidden.size(2)}, hidden.options());
    auto buf = at::empty({std::min(chunk, n), weight.size(0)}, hidden.options().dtype(kernels ? hidden.scalar_type() : at::kFloat));
    for (int64_t i = 0; i < n; i += chunk) {
      const int64_t c = std::min(chunk, n - i);
      // softmax = exp(logits - lse), minus the one-hot target, times the output gradient.
      auto d = buf.narrow(0, 0, c);
      const auto scale = s.valid.narrow(0, i, c) * g;
      chunk_logits(d, s.h.narrow(0, i, c), weight);
      fused::softmax_grad_(d, lse.narrow(0, i, c), s.target.narrow(0, i, c), scale);
      auto out = grad_flat.narrow(0, i, c);
      at::mm_out(out, d.scalar_type() == hidden.scalar_type() ? d : d.to(hidden.scalar_type()), weight);
    }
    grad_rows.copy_(grad_flat.view(grad_rows.sizes()));
    return {grad_h, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

int64_t vocab_chunk_tokens(int64_t chunk, int64_t vocab, const at::Device& device) {
  if (device.is_cuda()) return chunk;
  return std::min(chunk, std::max<int64_t>(1, (int64_t(32) << 20) / (4 * std::max<int64_t>(1, vocab))));
}

at::Tensor chunked_lm_loss_sum(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                               int64_t chunk_tokens) {
  check(hidden.dim() == 3 && labels.dim() == 2 && hidden.size(0) == labels.size(0) &&
            hidden.size(1) == labels.size(1),
        "chunked_lm_loss_sum: hidden must be (B, T, H) and labels (B, T)");
  check(weight.dim() == 2 && weight.size(1) == hidden.size(2), "chunked_lm_loss_sum: weight must be (V, H)");
  check(!weight.requires_grad(), "chunked_lm_loss_sum: the lm_head weight is frozen (no gradient is computed for it)");
  check(chunk_tokens > 0, "chunked_lm_loss_sum: chunk_tokens must be > 0");
  if (hidden.size(1) < 2) return at::zeros({}, hidden.options().dtype(at::kFloat));
  return ChunkedLmLoss::apply(hidden, weight, labels, vocab_chunk_tokens(chunk_tokens, weight.size(0), hidden.device()));
}

at::Tensor causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t v = logits.size(-1);
  auto shifted_logits = logits.slice(1, 0, logits.size(1) - 1).to(at::kFloat).reshape({-1, v});
  auto shifted_labels = labels.slice(1, 1).to(logits.device(), at::kLong).reshape({-1});
  return at::cross_entropy_loss(shifted_logits, shifted_labels, {}, at::Reduction::Sum, -100);
}

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t count = labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  return causal_lm_loss_sum(logits, labels) / double(std::max<int64_t>(count, 1));
}

}  // namespace r1dist
