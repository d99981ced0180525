// The language-model loss straight from the hidden states: lm_head and cross-entropy over
// chunks of tokens, so the (tokens x vocabulary) logits are never held at once. At the 14B
// shape a micro-batch of 2 x 8192 tokens has 2.5 G logits: in bf16 plus the fp32 copy the
// loss takes and its gradient, about 25 GB; chunked, one chunk's worth (docs/PERFORMANCE.md).
//
// The forward keeps its inputs and each token's log-sum-exp; the backward recomputes each
// chunk's logits (one more lm_head matmul, about 2% of a 14B step's FLOPs) and turns them into
// the gradient of the hidden states: softmax - one_hot, scaled, times the lm_head weight. On
// CUDA one buffer of a chunk's logits in the compute dtype per pass and one kernel for its
// log-sum-exp, one for its gradient (tensor/fused_ops.h); elsewhere one fp32 buffer worked on
// in place. The lm_head is frozen under LoRA, so it gets no gradient (a weight that requires
// one is refused).
// Numerics follow causal_lm_loss_sum(lm_head(hidden), labels) step by step: logits in the
// compute dtype, upcast to fp32 for the log-sum-exp, the gradient cast back to the compute
// dtype before the matmul; only the order of the final sum differs.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "r1dist/config/memory_estimate.h"  // kLossChunkTokens

namespace r1dist {

// Sum of token NLLs (scalar fp32, differentiable) over shifted positions whose label is not
// -100, from full logits. No host sync: the caller knows the count (Collated::loss_tokens).
at::Tensor causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels);
// HF's mean loss: sum / count (reads the count back from the device).
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);

// Tokens per chunk of a pass over (tokens x vocabulary) fp32 values: `chunk` on a GPU; on the
// CPU at most what keeps one chunk within 32 MiB (55 tokens of a 151,936 vocabulary), which
// the caches reach: 2,792 tokens of the tiny preset's loss took 6.1 s at 1,024 tokens per
// chunk and 3.1 s at 32 (2 cores, `r1dist bench loss --device cpu --preset tiny`).
int64_t vocab_chunk_tokens(int64_t chunk, int64_t vocab, const at::Device& device);

// hidden (B, T, H), weight (V, H), labels (B, T) int64 with -100 = no loss: the sum over
// positions t < T-1 of -log softmax(hidden[t] . weight^T)[labels[t+1]] as an fp32 scalar,
// differentiable with respect to `hidden`. chunk_tokens > 0 (vocab_chunk_tokens of it).
at::Tensor chunked_lm_loss_sum(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                               int64_t chunk_tokens = kLossChunkTokens);

}  // namespace r1dist
