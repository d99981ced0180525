// The elementwise pieces of a Qwen2 layer (RMSNorm, RoPE, SwiGLU) as autograd functions with
// hand-written backward passes. Written as ATen composites they cost several kernels each,
// over fp32 temporaries and broadcast or transposed operands that defeat vectorised kernels
// (a quarter of the GPU time of a 14B step, docs/PERFORMANCE.md), and they keep more
// activations than the backward needs. On CUDA each pass here is one kernel
// (src/tensor/fused_ops_cuda.cu); on the CPU the same formulas run in ATen, so CTest checks
// the hand-written gradients against autograd on the plain forms. Qwen2Model uses them on
// CUDA (Qwen2Model::set_fused; R1DIST_FUSED=0 turns them off).
//
// Numerics: each kernel computes in fp32 and rounds once, where the plain forms round to the
// compute dtype after every op; RMSNorm keeps HF's cast to the input dtype before the weight
// multiply. Norm weights are frozen (no weight gradient): a weight that requires grad is refused.
#pragma once
#include <ATen/ATen.h>

#include <utility>

namespace r1dist::fused {

// Whether the fused kernels run on `device` (a CUDA build and a CUDA device); elsewhere the
// functions below run their ATen formulas.
bool kernels_available(const at::Device& device);
// Whether a model on `device` uses them unless told otherwise: where the kernels run and the
// environment does not set R1DIST_FUSED=0 (Qwen2Model's default, and the memory estimate's).
bool on_by_default(const at::Device& device);

// HF Qwen2RMSNorm over the last dim: w * (x * rsqrt(mean(x^2) + eps)).to(x.dtype).
// x (..., H) contiguous, w (H) in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// The same norm and its input gradient without autograd, for functions that rebuild the
// norm's output in their own backward instead of keeping it (LoraLinear::forward_normed).
// x contiguous, w (H) in x's dtype. rms_norm_values returns (y, rstd), rstd fp32 per row;
// rms_norm_grads returns dx for the output's gradient dy. The values are a function of x
// and w only: a second call gives the first call's y bit for bit.
std::pair<at::Tensor, at::Tensor> rms_norm_values(const at::Tensor& x, const at::Tensor& w, double eps);
at::Tensor rms_norm_grads(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rstd);

// A decoding step's residual add and the next norm without autograd: (s, rms_norm(s, w)) with
// s = x + delta rounded to x's dtype, the values of the two operations apart bit for bit; on
// CUDA one kernel. x and delta of one shape, w (H) frozen.
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& w,
                                               double eps);

// Attention of one new token per sequence over its cache (decoding), without autograd: q
// (B, Hkv, R, D), the R query heads that share each key/value head; k and v (B, Hkv, S, D),
// a cache's first S columns (rows of D values D apart); allowed (B, S) bool, the columns each
// sequence attends to (at least one). Returns (B, Hkv, R, D). On CUDA (R <= 16, D <= 256) one
// kernel with a block per span of columns of every head and sequence (32-column chunks, an
// online softmax over them), then, with more than one span, one that merges the spans: scores,
// softmax and the weighted sum in fp32, rounded once. `splits` spans per head and sequence (0:
// about two blocks per multiprocessor; tests force others). Elsewhere and for other shapes,
// scaled dot-product attention under the mask.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                            double scale, int64_t splits = 0);
// Whether decoding (Qwen2Model::decode_step) uses decode_attention: yes unless
// R1DIST_DECODE_ATTENTION=0 in the environment (scaled dot-product attention under the mask
// then, for benchmarks; docs/PERFORMANCE.md compares the two).
bool decode_attention_enabled();

// Rotary embedding, HF's rotate_half convention: x * cos + rotate_half(x) * sin, for x
// (B, T, heads, D) contiguous (the projection's own layout, before the heads are transposed)
// and cos, sin (1 or B, T, D) as rope_tables gives them.
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// Decoding's RoPE and cache write in one step, without autograd: q (B, 1, Hq * D), k and v
// (B, 1, Hkv * D), the projections of one new token per sequence; cos, sin (1 or B, 1, D) as
// rope_tables gives them; the caches (B, Hkv, C, D) contiguous and column (1) int64 on their
// device (read there, so a captured CUDA graph replays it with the column of each step). k
// rotated and v go into that column of k_cache and v_cache; returns q rotated, (B, Hq, D). On
// CUDA one kernel with rope's arithmetic (the same values bit for bit); elsewhere rope and
// index_copy_.
at::Tensor rope_into_cache(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos,
                           const at::Tensor& sin, at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& column);

// silu(gate) * up, the SwiGLU product that feeds down_proj; gate and up of one shape.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

// The same product and its gradients without autograd, for functions that recompute the
// product in their own backward (LoraLinear::forward_swiglu). Contiguous operands of one
// dtype and device; swiglu_grads returns (d gate, d up) for the product's gradient dy.
at::Tensor swiglu_values(const at::Tensor& gate, const at::Tensor& up);
std::pair<at::Tensor, at::Tensor> swiglu_grads(const at::Tensor& dy, const at::Tensor& gate, const at::Tensor& up);

// The cross-entropy of one chunk of logits (rows, V), contiguous, in the compute dtype, for
// the chunked loss (model/lm_loss.h), without an fp32 copy of the chunk: one kernel reads it
// once for each row's log-sum-exp (fp32, a running maximum and sum) and the target's logit;
// another turns it in place into the gradient (exp(logit - lse) - one_hot(target)) * scale,
// computed in fp32 and rounded once. target (rows) int64 in [0, V); lse and scale (rows) fp32.
// Elsewhere the same formulas run in ATen, in place on an fp32 copy of the chunk, or on the
// chunk itself when it is fp32: logsumexp_and_target then leaves it overwritten (scratch).
std::pair<at::Tensor, at::Tensor> logsumexp_and_target(const at::Tensor& logits, const at::Tensor& target);
void softmax_grad_(at::Tensor& logits, const at::Tensor& lse, const at::Tensor& target, const at::Tensor& scale);

}  // namespace r1dist::fused
