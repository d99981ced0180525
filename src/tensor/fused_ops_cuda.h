// The CUDA kernels behind tensor/fused_ops.h (src/tensor/fused_ops_cuda.cu). Inputs are
// contiguous tensors of one dtype (fp32, bf16 or fp16) on one CUDA device; the caller checks.
#pragma once
#include <ATen/ATen.h>

#include <utility>

namespace r1dist::fused::cuda {

// (y, rstd): y like x, rstd (rows) fp32 with rows = x.numel() / H.
std::pair<at::Tensor, at::Tensor> rms_norm_forward(const at::Tensor& x, const at::Tensor& w, double eps);
// (x + delta, rms_norm(x + delta)): the sum rounded to x's dtype, then normed, in one kernel.
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& w,
                                               double eps);
at::Tensor rms_norm_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rstd);

// backward = false: x * cos + rotate_half(x) * sin; true: the gradient of that map at dy = x.
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward);
// fused::rope_into_cache's kernel: q, k, v, cos, sin and the caches contiguous, column (1) int64.
at::Tensor rope_into_cache(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos,
                           const at::Tensor& sin, at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& column);

at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up);
// (d gate, d up)
std::pair<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate, const at::Tensor& up);

// (lse, picked), each (rows) fp32, for logits (rows, V) and target (rows) int64.
std::pair<at::Tensor, at::Tensor> logsumexp_and_target(const at::Tensor& logits, const at::Tensor& target);
// In place on logits (rows, V); lse, scale (rows) fp32, target (rows) int64.
void softmax_grad_(at::Tensor& logits, const at::Tensor& lse, const at::Tensor& target, const at::Tensor& scale);

// Decoding attention (fused::decode_attention): whether the kernel takes these operands, and
// the kernel itself.
bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& allowed);
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                            double scale, int64_t splits);

}  // namespace r1dist::fused::cuda
