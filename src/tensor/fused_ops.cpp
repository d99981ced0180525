#include "r1dist/tensor/fused_ops.h"

#include <torch/csrc/autograd/custom_function.h>

#include "r1dist/base/env.h"
#include "r1dist/base/error.h"
#include "r1dist/tensor/compat.h"
#ifdef R1DIST_WITH_CUDA
#include "tensor/fused_ops_cuda.h"
#endif

namespace r1dist::fused {

bool kernels_available(const at::Device& device) {
#ifdef R1DIST_WITH_CUDA
  return device.is_cuda();
#else
  (void)device;
  return false;
#endif
}

bool on_by_default(const at::Device& device) {
  return kernels_available(device) && !env_is("R1DIST_FUSED", "0");
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#ifdef R1DIST_WITH_CUDA
bool on_kernels(const at::Tensor& x) { return kernels_available(x.device()); }
#endif

bool needs_graph(const at::Tensor& x) { return at::GradMode::is_enabled() && x.requires_grad(); }

}  // namespace

// ---- RMSNorm: n = x * r, r = rsqrt(mean(x^2) + eps) in fp32; y = w * n.to(dtype).
// dx = r * (g - n * mean(g * n)) with g = dy * w (the cast is straight-through).

std::pair<at::Tensor, at::Tensor> rms_norm_values(const at::Tensor& x, const at::Tensor& w, double eps) {
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(x)) return cuda::rms_norm_forward(x, w, eps);
#endif
  const auto xf = x.to(at::kFloat);
  const auto r = at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + eps);  // (..., 1)
  auto y = (w.to(at::kFloat) * (xf * r).to(x.scalar_type()).to(at::kFloat)).to(x.scalar_type());
  return {y, r.reshape({-1})};
}

at::Tensor rms_norm_grads(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rstd) {
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(x)) return cuda::rms_norm_backward(dy, x, w, rstd);
#endif
  const auto r = rstd.view({-1, 1});
  const int64_t h = x.size(-1);
  const auto g = dy.reshape({-1, h}).to(at::kFloat) * w.to(at::kFloat);
  const auto n = x.reshape({-1, h}).to(at::kFloat) * r;
  const auto mean_gn = (g * n).sum({-1}, /*keepdim=*/true) / double(h);
  return (r * (g - n * mean_gn)).to(x.scalar_type()).view(x.sizes());
}

namespace {

struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, double eps) {
    auto [y, rstd] = rms_norm_values(x, w, eps);
    ctx->save_for_backward({x, w, rstd});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    return {rms_norm_grads(grads[0].contiguous(), s[0], s[1], s[2]), at::Tensor(), at::Tensor()};
  }
};

// ---- RoPE: y = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) for halves x1, x2.
// Its gradient: dx = dy * cos + rotate_half^T(dy * sin), rotate_half^T(z) = cat(z2, -z1).

at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward) {
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(x)) return cuda::rope(x, cos, sin, backward);
#endif
  const int64_t half = x.size(-1) / 2;
  const auto xf = x.to(at::kFloat);
  const auto c = cos.to(at::kFloat).unsqueeze(2), s = sin.to(at::kFloat).unsqueeze(2);  // (Bc, T, 1, D)
  at::Tensor y;
  if (!backward) {
    y = xf * c + at::cat({-xf.slice(-1, half), xf.slice(-1, 0, half)}, -1) * s;
  } else {
    const auto z = xf * s;
    y = xf * c + at::cat({z.slice(-1, half), -z.slice(-1, 0, half)}, -1);
  }
  return y.to(x.scalar_type());
}

struct RopeFunction : public torch::autograd::Function<RopeFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rope_apply(x, cos, sin, false);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    return {rope_apply(grads[0].contiguous(), s[0], s[1], true), at::Tensor(), at::Tensor()};
  }
};

// ---- SwiGLU: y = silu(g) * u, silu(g) = g * sigmoid(g).
// dg = dy * u * s * (1 + g * (1 - s)), du = dy * g * s with s = sigmoid(g).

}  // namespace

at::Tensor swiglu_values(const at::Tensor& g, const at::Tensor& u) {
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(g)) return cuda::swiglu_forward(g, u);
#endif
  const auto gf = g.to(at::kFloat);
  return (gf * at::sigmoid(gf) * u.to(at::kFloat)).to(g.scalar_type());
}

std::pair<at::Tensor, at::Tensor> swiglu_grads(const at::Tensor& dy, const at::Tensor& g, const at::Tensor& u) {
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(g)) return cuda::swiglu_backward(dy, g, u);
#endif
  const auto gf = g.to(at::kFloat), uf = u.to(at::kFloat), dyf = dy.to(at::kFloat);
  const auto s = at::sigmoid(gf);
  auto dg = dyf * uf * s * (1.0 + gf * (1.0 - s));
  auto du = dyf * gf * s;
  return {dg.to(g.scalar_type()), du.to(u.scalar_type())};
}

namespace {

struct SwigluFunction : public torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& g, const at::Tensor& u) {
    ctx->save_for_backward({g, u});
    return swiglu_values(g, u);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    auto [dg, du] = swiglu_grads(grads[0].contiguous(), s[0], s[1]);
    return {dg, du};
  }
};

void check_same(const at::Tensor& a, const at::Tensor& b, const char* what) {
  check(a.device() == b.device() && a.scalar_type() == b.scalar_type(),
        std::string("fused::") + what + ": operands differ in device or dtype");
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
  check(x_in.dim() >= 1 && w_in.dim() == 1 && w_in.size(0) == x_in.size(-1),
        "fused::rms_norm: the weight must be (hidden) for x (..., hidden)");
  check(!w_in.requires_grad(), "fused::rms_norm: the norm weight must be frozen (no weight gradient here)");
  const auto x = x_in.contiguous();
  const auto w = w_in.to(x.scalar_type()).contiguous();
  check_same(x, w, "rms_norm");
  if (!needs_graph(x)) return rms_norm_values(x, w, eps).first;
  return RmsNormFunction::apply(x, w, eps);
}

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x_in, const at::Tensor& delta_in,
                                               const at::Tensor& w_in, double eps) {
  check(x_in.sizes() == delta_in.sizes(), "fused::add_rms_norm: x and delta differ in shape");
  check(!needs_graph(x_in) && !needs_graph(delta_in) && !w_in.requires_grad(),
        "fused::add_rms_norm: for inference (no gradient through it)");
  const auto x = x_in.contiguous(), delta = delta_in.contiguous();
  const auto w = w_in.to(x.scalar_type()).contiguous();
  check_same(x, delta, "add_rms_norm");
  check_same(x, w, "add_rms_norm");
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(x)) return cuda::add_rms_norm(x, delta, w, eps);
#endif
  auto sum = x + delta;
  return {sum, rms_norm_values(sum, w, eps).first};
}

bool decode_attention_enabled() {
  static const bool on = !env_is("R1DIST_DECODE_ATTENTION", "0");
  return on;
}

at::Tensor decode_attention(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                            double scale, int64_t splits) {
  check(q_in.dim() == 4 && k.dim() == 4 && v.dim() == 4 && allowed.dim() == 2 && k.size(1) == q_in.size(1) &&
            allowed.size(0) == q_in.size(0) && allowed.size(1) == k.size(2),
        "fused::decode_attention: q (B, Hkv, R, D), k and v (B, Hkv, S, D), allowed (B, S)");
#ifdef R1DIST_WITH_CUDA
  const auto q = q_in.contiguous();
  if (on_kernels(q) && cuda::decode_attention_applies(q, k, v, allowed))
    return cuda::decode_attention(q, k, v, allowed, scale, splits);
#endif
  (void)splits;
  // Each group's R query heads as R query rows of one head over its keys.
  return compat::masked_attention(q_in, k, v, allowed.view({allowed.size(0), 1, 1, allowed.size(1)}), scale);
}

at::Tensor rope(const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  check(x_in.dim() == 4 && x_in.size(-1) % 2 == 0, "fused::rope: x must be (B, T, heads, D) with D even");
  const int64_t b = x_in.size(0), t = x_in.size(1), d = x_in.size(3);
  check(cos_in.numel() == sin_in.numel() && cos_in.numel() % (t * d) == 0,
        "fused::rope: cos and sin must hold (1 or B, T, D) values");
  const int64_t bc = cos_in.numel() / (t * d);
  check(bc == 1 || bc == b, "fused::rope: cos and sin must be (1 or B, T, D)");
  const auto x = x_in.contiguous();
  const auto cos = cos_in.reshape({bc, t, d}).to(x.scalar_type()).contiguous();
  const auto sin = sin_in.reshape({bc, t, d}).to(x.scalar_type()).contiguous();
  check_same(x, cos, "rope");
  if (!needs_graph(x)) return rope_apply(x, cos, sin, false);
  return RopeFunction::apply(x, cos, sin);
}

at::Tensor rope_into_cache(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos,
                           const at::Tensor& sin, at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& column) {
  check(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes() && k_cache.is_contiguous() &&
            v_cache.is_contiguous() && k_cache.size(3) % 2 == 0,
        "fused::rope_into_cache: the caches must be (B, Hkv, C, D) contiguous, D even");
  const int64_t b = k_cache.size(0), hkv = k_cache.size(1), d = k_cache.size(3);
  check(q.dim() == 3 && q.size(0) == b && q.size(1) == 1 && q.size(2) % d == 0 && k.sizes() == v.sizes() &&
            k.dim() == 3 && k.size(0) == b && k.size(1) == 1 && k.size(2) == hkv * d,
        "fused::rope_into_cache: q must be (B, 1, Hq * D) and k, v (B, 1, Hkv * D) for caches (B, Hkv, C, D)");
  check(cos.numel() == sin.numel() && (cos.numel() == d || cos.numel() == b * d),
        "fused::rope_into_cache: cos and sin must hold (1 or B, 1, D) values");
  check(column.numel() == 1 && column.scalar_type() == at::kLong && column.device() == k_cache.device(),
        "fused::rope_into_cache: column must be one int64 on the caches' device");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&k, &v, &cos, &sin, &k_cache, &v_cache})
    check_same(q, *t, "rope_into_cache");
  const int64_t hq = q.size(2) / d;
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(q))
    return cuda::rope_into_cache(q.contiguous(), k.contiguous(), v.contiguous(), cos.contiguous(), sin.contiguous(),
                                 k_cache, v_cache, column);
#endif
  const at::NoGradGuard no_grad;
  const auto qr = rope(q.view({b, 1, hq, d}), cos, sin);
  k_cache.index_copy_(2, column, rope(k.view({b, 1, hkv, d}), cos, sin).transpose(1, 2));
  v_cache.index_copy_(2, column, v.reshape({b, 1, hkv, d}).transpose(1, 2));
  return qr.view({b, hq, d});
}

namespace {

void check_rows(const at::Tensor& logits, const at::Tensor& target, std::initializer_list<const at::Tensor*> per_row,
                const char* what) {
  check(logits.dim() == 2 && logits.is_contiguous(), std::string("fused::") + what + ": logits must be contiguous (rows, V)");
  check(target.dim() == 1 && target.size(0) == logits.size(0) && target.scalar_type() == at::kLong &&
            target.device() == logits.device(),
        std::string("fused::") + what + ": target must be (rows) int64 on the logits' device");
  for (const auto* t : per_row)
    check(t->dim() == 1 && t->size(0) == logits.size(0) && t->scalar_type() == at::kFloat &&
              t->is_contiguous() && t->device() == logits.device(),
          std::string("fused::") + what + ": lse and scale must be contiguous (rows) fp32 on the logits' device");
}

}  // namespace

std::pair<at::Tensor, at::Tensor> logsumexp_and_target(const at::Tensor& logits, const at::Tensor& target_in) {
  const auto target = target_in.contiguous();
  check_rows(logits, target, {}, "logsumexp_and_target");
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(logits)) return cuda::logsumexp_and_target(logits, target);
#endif
  // at::logsumexp's steps in place (max, exp(x - max), sum, log, + max) on an fp32 copy, or on
  // logits itself when it is fp32: the caller's scratch, no (rows, V) temporaries.
  auto f = logits.to(at::kFloat);
  auto picked = f.gather(1, target.unsqueeze(1)).squeeze(1);
  const auto m = at::amax(f, {1}, /*keepdim=*/true);
  auto lse = at::sum(f.sub_(m).exp_(), {1});
  lse.log_().add_(m.squeeze(1));
  return {lse, picked};
}

void softmax_grad_(at::Tensor& logits, const at::Tensor& lse, const at::Tensor& target_in, const at::Tensor& scale) {
  const auto target = target_in.contiguous();
  check_rows(logits, target, {&lse, &scale}, "softmax_grad_");
#ifdef R1DIST_WITH_CUDA
  if (on_kernels(logits)) return cuda::softmax_grad_(logits, lse, target, scale);
#endif
  auto d = logits.to(at::kFloat).sub_(lse.unsqueeze(1)).exp_();
  d.scatter_add_(1, target.unsqueeze(1), at::full({d.size(0), 1}, -1.0, d.options()));
  logits.copy_(d.mul_(scale.unsqueeze(1)));
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  check(gate.sizes() == up.sizes(), "fused::swiglu: gate and up differ in shape");
  check_same(gate, up, "swiglu");
  const auto g = gate.contiguous(), u = up.contiguous();
  if (!needs_graph(g) && !needs_graph(u)) return swiglu_values(g, u);
  return SwigluFunction::apply(g, u);
}

}  // namespace r1dist::fused
