// The few places where libtorch 1.13 (Debian, CPU) and 2.x (the CUDA builds) differ.
#pragma once
#include <ATen/ATen.h>
#include <torch/version.h>

#include <limits>
#ifdef R1DIST_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define R1DIST_HAS_SDPA 1  // at::scaled_dot_product_attention with a scale argument
#else
#define R1DIST_HAS_SDPA 0
#endif

// libtorch's variable-length flash attention (at::_flash_attention_forward, differentiable):
// CUDA builds of libtorch 2.6 and later.
#if defined(R1DIST_WITH_CUDA) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6))
#define R1DIST_HAS_VARLEN_FLASH 1
#else
#define R1DIST_HAS_VARLEN_FLASH 0
#endif

namespace r1dist::compat {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define R1DIST_HAS_SDPA_GQA 1  // at::scaled_dot_product_attention with enable_gqa
#else
#define R1DIST_HAS_SDPA_GQA 0
#endif

// Keys or values (B, Hkv, T, D) repeated to the query heads (B, Hkv * rep, T, D): query head
// h reads kv head h / rep. A copy: only where a kernel takes no grouped heads.
inline at::Tensor repeat_kv(const at::Tensor& x, int64_t rep) {
  if (rep == 1) return x;
  const auto b = x.size(0), n = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, n, rep, t, d}).reshape({b, n * rep, t, d});
}

// The eager form of attention (HF's eager_attention_forward: softmax in fp32) over grouped
// heads: the queries of one kv head form one broadcast batch, so keys are never repeated.
// forbidden (broadcastable to (B, Hq, Tq, Tk), true = masked out).
inline at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& forbidden, double scale) {
  const int64_t b = q.size(0), hq = q.size(1), tq = q.size(2), d = q.size(3), hkv = k.size(1), tk = k.size(2);
  const auto qg = q.reshape({b, hkv, hq / hkv, tq, d});
  auto scores = at::matmul(qg, k.unsqueeze(2).transpose(3, 4)) * scale;  // (B, Hkv, rep, Tq, Tk)
  scores = scores.view({b, hq, tq, tk}).masked_fill(forbidden, -std::numeric_limits<double>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type()).view({b, hkv, hq / hkv, tq, tk});
  return at::matmul(probs, v.unsqueeze(2)).view({b, hq, tq, d});
}

// Causal attention over (B, Hq, Tq, D) queries and (B, Hkv, Tk, D) keys/values, Hq a multiple
// of Hkv (grouped-query attention), Tk >= Tq, the queries being the last Tq positions. Fused
// kernel where libtorch has one, with grouped heads where it takes them (cuDNN on an H200:
// the keys are never repeated, a third of the memory the attention keeps for its backward
// and faster; tools/gpu/probe_attention.py), else the eager form.
inline at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   double scale) {
  const int64_t tq = q.size(2), tk = k.size(2);
#if R1DIST_HAS_SDPA_GQA
  if (tq == tk || tq == 1) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, tq == tk, scale, true);
#elif R1DIST_HAS_SDPA
  const int64_t rep = q.size(1) / k.size(1);
  if (tq == tk || tq == 1)
    return at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), {}, 0.0, tq == tk, scale);
#endif
  // query i (absolute position tk - tq + i) sees keys 0..tk-tq+i
  auto forbidden = at::ones({tq, tk}, q.options().dtype(at::kBool)).triu(tk - tq + 1);
  return eager_attention(q, k, v, forbidden, scale);
}

// Attention with an explicit mask: allowed (B or 1, 1, Tq, Tk) bool, true = may attend;
// q (B, Hq, Tq, D), k and v (B, Hkv, Tk, D) as for causal_attention. Every query row must
// allow at least one key.
inline at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& allowed, double scale) {
#if R1DIST_HAS_SDPA
  // Repeated keys: the kernels that take grouped heads take no mask (the math form would run).
  const int64_t rep = q.size(1) / k.size(1);
  return at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), allowed, 0.0, false, scale);
#else
  return eager_attention(q, k, v, allowed.logical_not(), scale);
#endif
}

// Whether varlen_causal_attention runs for a model on `device` computing in `dtype` (the
// flash kernel takes bf16 and fp16 on CUDA); otherwise packed rows take a block mask.
inline bool varlen_attention_applies(const at::Device& device, at::ScalarType dtype) {
  return R1DIST_HAS_VARLEN_FLASH && device.is_cuda() && (dtype == at::kBFloat16 || dtype == at::kHalf);
}

// Causal attention inside each of the rows packed in q (T, Hq, D), k and v (T, Hkv, D), Hq a
// multiple of Hkv (GQA without repeated keys): row r holds tokens [cu[r], cu[r+1]) with cu
// (rows + 1) int32; `longest` is the longest row. Returns (T, Hq, D).
inline at::Tensor varlen_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const at::Tensor& cu, int64_t longest, double scale) {
#if R1DIST_HAS_VARLEN_FLASH
  return std::get<0>(at::_flash_attention_forward(q, k, v, cu, cu, longest, longest, /*dropout_p=*/0.0,
                                                  /*is_causal=*/true, /*return_debug_mask=*/false, scale));
#else
  (void)q, (void)k, (void)v, (void)cu, (void)longest, (void)scale;
  throw std::runtime_error("varlen_causal_attention: this libtorch has no variable-length flash kernel");
#endif
}

// Waits for all work queued on `d` (no-op on the CPU): for host-clock timing.
inline void synchronize(const at::Device& d) {
#ifdef R1DIST_WITH_CUDA
  if (d.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)d;
#endif
}

}  // namespace r1dist::compat
