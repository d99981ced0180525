// Qwen2ForCausalLM in libtorch (shared/SPEC.md §2): embeddings, RMSNorm, RoPE, GQA attention
// with q/k/v bias, SwiGLU MLP, final norm, lm_head. Weights are plain tensors held in a
// name table that matches the HF checkpoint; forward works in fp32 or bf16 on CPU or CUDA.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "r1dist/qwen2_config.h"

namespace r1dist {

// One projection y = x W^T (+ b). The place where the QLoRA issue adds NF4 storage and
// adapters.
struct Projection {
  at::Tensor weight;  // (out, in)
  at::Tensor bias;    // (out) or undefined
  at::Tensor forward(const at::Tensor& x) const;
};

struct Qwen2Layer {
  at::Tensor input_norm, post_norm;  // (hidden)
  Projection q, k, v, o, gate, up, down;
};

// Keys and values of earlier positions, per layer: (B, n_kv, T_past, head_dim).
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length = 0;
};

class Qwen2Model {
 public:
  // Allocates every weight (uninitialised) with `dtype` on `device`.
  Qwen2Model(const Qwen2Config& cfg, at::ScalarType dtype, at::Device device);
  // Reads DIR/config.json and the safetensors weights (single or sharded), converting them
  // to `dtype` on `device`. Missing, unexpected or mis-shaped tensors are errors.
  static Qwen2Model load(const std::string& dir, at::ScalarType dtype, at::Device device);

  const Qwen2Config& config() const { return cfg_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // (B, T) int64 ids -> (B, T, hidden) final-normed hidden states. With a cache, positions
  // continue from cache->length and the new keys/values are appended.
  at::Tensor hidden_states(const at::Tensor& ids, KVCache* cache = nullptr) const;
  // (..., hidden) -> (..., vocab) logits in the compute dtype.
  at::Tensor lm_head(const at::Tensor& hidden) const;
  at::Tensor forward(const at::Tensor& ids, KVCache* cache = nullptr) const {
    return lm_head(hidden_states(ids, cache));
  }

  // Every tensor under its HF name, in qwen2_weight_table order (lm_head absent when tied).
  std::vector<std::pair<std::string, at::Tensor*>> named_weights();

 private:
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const;
  at::Tensor attention(const Qwen2Layer& l, const at::Tensor& x, const at::Tensor& cos,
                       const at::Tensor& sin, KVCache* cache, int layer) const;
  at::Tensor mlp(const Qwen2Layer& l, const at::Tensor& x) const;

  Qwen2Config cfg_;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor embed_;
  std::vector<Qwen2Layer> layers_;
  at::Tensor final_norm_;
  at::Tensor lm_head_;  // undefined when tie_word_embeddings
};

// (cos, sin), each (T, head_dim) in `dtype`, for positions offset..offset+T-1 (HF rotate_half
// convention: inv_freq in fp32, emb = cat(freqs, freqs)).
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, double theta, int64_t offset,
                                              int64_t length, at::ScalarType dtype,
                                              at::Device device);

// Sum of token NLLs (fp32) over shifted positions whose label is not -100, and their count.
struct LossSum {
  at::Tensor sum;  // scalar fp32, differentiable
  int64_t count = 0;
};
LossSum causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels);
// HF's mean loss: sum / count.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);

// "bf16"/"bfloat16" -> kBFloat16, "fp32"/"float32" -> kFloat, "fp16"/"float16" -> kHalf.
at::ScalarType parse_compute_dtype(const std::string& s);
// "auto" -> CUDA when available, "cpu", "cuda", "cuda:N".
at::Device parse_device(const std::string& s, int local_rank = 0);

}  // namespace r1dist
