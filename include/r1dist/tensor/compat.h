// The few places where libtorch 1.13 (Debian, CPU) and 2.x (GPU machine) differ.
#pragma once
#include <ATen/ATen.h>
#include <torch/version.h>
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

// Causal attention over (B, H, Tq, D) queries and (B, H, Tk, D) keys/values with Tk >= Tq,
// the queries being the last Tq positions. Fused kernel where libtorch has one, else the
// eager form of HF's eager_attention_forward (softmax in fp32).
inline at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   double scale) {
  const int64_t tq = q.size(2), tk = k.size(2);
#if R1DIST_HAS_SDPA
  if (tq == tk) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale);
  if (tq == 1) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, scale);
#endif
  auto scores = at::matmul(q, k.transpose(2, 3)) * scale;
  // query i (absolute position tk - tq + i) sees keys 0..tk-tq+i
  auto mask = at::ones({tq, tk}, q.options().dtype(at::kBool)).triu(tk - tq + 1);
  scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v);
}

// Attention with an explicit mask: allowed (B or 1, 1, Tq, Tk) bool, true = may attend.
// Every query row must allow at least one key.
inline at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& allowed, double scale) {
#if R1DIST_HAS_SDPA
  return at::scaled_dot_product_attention(q, k, v, allowed, 0.0, false, scale);
#else
  auto scores = at::matmul(q, k.transpose(2, 3)) * scale;
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v);
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
