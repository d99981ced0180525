// Qwen2ForCausalLM in libtorch (as transformers computes it): embeddings, RMSNorm, RoPE, GQA attention
// with q/k/v bias, SwiGLU MLP, final norm, lm_head. Weights are plain tensors held in a
// name table that matches the HF checkpoint; forward works in fp32 or bf16 on CPU or CUDA.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/peft/lora_adapters.h"
#include "r1dist/peft/lora_linear.h"

namespace r1dist {

class ActivationOffload;

struct Qwen2Layer {
  at::Tensor input_norm, post_norm;  // (hidden)
  LoraLinear q, k, v, o, gate, up, down;
  // "q_proj" ... "down_proj" -> the projection.
  LoraLinear& proj(const std::string& module);
};

struct LoadOptions {
  QuantMode quant = QuantMode::none;  // nf4: projections are quantised as they are read
  bool double_quant = true;
};

// Keys and values of earlier positions, per layer: (B, n_kv, T_past, head_dim).
// With capacity > 0 each layer's keys and values live in one buffer of that many positions,
// written in place (no copy of the past per step); otherwise they grow by concatenation.
struct KVCache {
  std::vector<at::Tensor> k, v;  // (B, n_kv, capacity or length, head_dim)
  int64_t length = 0;
  int64_t capacity = 0;
  at::Tensor left_pad;  // (B) int64 from the first call's left_pad; undefined = no padding
};

// The device-side state of single-token decoding over a cache with capacity (model/decoder.h):
// nothing in a step depends on a host value, so one step can be captured as a CUDA graph and
// replayed. A step writes its keys and values at `column`, lets every row see that column,
// and advances `positions` and `column` by one.
struct DecodeSlots {
  at::Tensor positions;  // (B, 1) int64: the RoPE position of each row's next token
  at::Tensor column;     // (1) int64: the cache column the next token is written to
  at::Tensor allowed;    // (B, 1, 1, capacity) bool: the cache columns each row attends to
};

// Rows packed end to end in one (1, T) sequence (data/packing.h): RoPE positions restart at
// each row and no token attends across a row boundary. On CUDA in bf16/fp16 attention runs
// in libtorch's variable-length flash kernel over cu_seqlens; elsewhere (CPU, fp32) under the
// block-diagonal causal mask `allowed`.
struct PackedRows {
  at::Tensor positions;   // (1, T) int64: each token's place in its own row
  at::Tensor cu_seqlens;  // (rows + 1) int32: where each row starts, then T
  int64_t longest = 0;    // the longest row
  at::Tensor allowed;     // (1, 1, T, T) bool, causal within a row; undefined on the varlen path
};
// The layout of rows of these lengths (each > 0) on `device`, for a model computing in `dtype`.
PackedRows packed_rows(const std::vector<int64_t>& row_lengths, at::Device device, at::ScalarType dtype);

class Qwen2Model {
 public:
  // Allocates every weight (uninitialised, dense) with `dtype` on `device`.
  Qwen2Model(const Qwen2Config& cfg, at::ScalarType dtype, at::Device device)
      : Qwen2Model(cfg, dtype, device, /*allocate=*/true) {}
  // Reads DIR/config.json and the safetensors weights (single or sharded), converting them
  // to `dtype` on `device`, tensor by tensor (with NF4, each projection is quantised as it
  // arrives, so peak memory stays near the quantised size). Missing, unexpected or
  // mis-shaped tensors are errors.
  static Qwen2Model load(const std::string& dir, at::ScalarType dtype, at::Device device,
                         const LoadOptions& opt = {});

  // The projections named in `modules` ("q_proj" ... "down_proj"), layer by layer in
  // projection order, under their PEFT module paths. Throws UsageError on an unknown name.
  std::vector<AdapterRef> projections(const std::vector<std::string>& modules);
  // Adds LoRA adapters to the named projections (peft/lora_adapters.h: one flat buffer), of
  // one spec, or of a spec per module path.
  void attach_lora(const LoraSpec& spec, const std::vector<std::string>& targets, uint64_t seed);
  void attach_lora(const LoraSpecFor& spec_for, const std::vector<std::string>& targets, uint64_t seed);
  const LoraAdapters& lora() const { return lora_; }

  const Qwen2Config& config() const { return cfg_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  // (B, T) int64 ids -> (B, T, hidden) final-normed hidden states. With a cache, positions
  // continue from cache->length and the new keys/values are appended.
  // Left padding (batched prompts of different lengths): left_pad (B) int64 counts the pad
  // tokens at the start of each row; row b's token at column j then has position j - pad_b
  // and no token attends to a pad (as HF with an attention mask). A cache keeps the first
  // call's left_pad for the calls that follow.
  at::Tensor hidden_states(const at::Tensor& ids, KVCache* cache = nullptr,
                           const at::Tensor& left_pad = {}) const;
  // Rows packed in one (1, T) sequence (no cache): each row's hidden states as if it were
  // alone. The plain forward of hidden_states_train (no recomputation).
  at::Tensor hidden_states(const at::Tensor& ids, const PackedRows& packed) const {
    return hidden_states_train(ids, /*checkpoint=*/false, &packed);
  }
  // One token per row, (B, 1) ids -> (B, vocab) logits, attending to the first `span` cache
  // columns (span > the slots' column; columns the row may not see are masked). Queries of a
  // GQA group attend together to their shared keys: no repeated copy of the cache.
  at::Tensor decode_step(const at::Tensor& ids, KVCache& cache, DecodeSlots& slots, int64_t span) const;
  // (..., hidden) -> (..., vocab) logits in the compute dtype.
  at::Tensor lm_head(const at::Tensor& hidden) const;
  // The (vocab, hidden) weight lm_head multiplies by (the embedding when tied).
  const at::Tensor& lm_head_weight() const { return cfg_.tie_word_embeddings ? embed_ : lm_head_; }
  at::Tensor forward(const at::Tensor& ids, KVCache* cache = nullptr, const at::Tensor& left_pad = {}) const {
    return lm_head(hidden_states(ids, cache, left_pad));
  }
  // Training form of hidden_states (no cache): `plan` (config/memory_estimate.h) says which
  // layers keep only their input during the forward and recompute the whole layer in the
  // backward (per-layer activation checkpointing), which recompute only their MLP's gate and
  // up, and which keep every activation; gradients are the same under every plan. With
  // `packed`, ids is (1, T) holding the packed rows; `packed` must outlive the backward.
  at::Tensor hidden_states_train(const at::Tensor& ids, const RecomputePlan& plan,
                                 const PackedRows* packed = nullptr) const;
  // Bytes the last training forward put in host memory (RecomputePlan::offload).
  int64_t offloaded_bytes() const;
  // checkpoint = true: every layer recomputed; false: none.
  at::Tensor hidden_states_train(const at::Tensor& ids, bool checkpoint, const PackedRows* packed = nullptr) const {
    return hidden_states_train(ids, RecomputePlan{checkpoint ? cfg_.num_hidden_layers : 0, 0}, packed);
  }
  // One decoder layer: h + attn(norm(h)), then + mlp(norm(.)); with a cache, the layer's
  // keys and values are appended to it (allowed: as attention() takes it).
  at::Tensor layer_forward(int layer, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                           const PackedRows* packed = nullptr, KVCache* cache = nullptr,
                           const at::Tensor& allowed = {}) const;

  // Whether RMSNorm, RoPE and SwiGLU run as the fused autograd functions of
  // tensor/fused_ops.h instead of ATen composites. Default: on where the fused kernels run
  // (CUDA) unless the environment sets R1DIST_FUSED=0; tests turn it on for the CPU to check
  // the hand-written gradients, and off on the GPU to compare.
  void set_fused(bool on) { fused_ = on; }
  bool fused() const { return fused_; }

  // Every tensor under its HF name, in qwen2_weight_table order (lm_head absent when tied).
  std::vector<std::pair<std::string, at::Tensor*>> named_weights();
  // The tensor of one entry of qwen2_weight_table: the one map from the HF names (and the
  // roles the table gives them) to the model's members, used by loading, allocation and
  // named_weights.
  at::Tensor& weight(const WeightSpec& w);

 private:
  Qwen2Model(const Qwen2Config& cfg, at::ScalarType dtype, at::Device device, bool allocate);
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const;
  // The one layer loop: h through layer(i, h) for every decoder layer, then the final norm.
  template <class Layer>
  at::Tensor through_layers(at::Tensor h, const Layer& layer) const {
    for (int i = 0; i < cfg_.num_hidden_layers; ++i) h = layer(i, h);
    return rms_norm(h, final_norm_);
  }
  // The layer's input h (B, T, hidden) -> q (B, nh, T, D), k and v (B, nkv, T, D) of
  // input_norm(h), RoPE applied to q and k. Fused: the norm's output is not kept for the
  // backward (LoraLinear::forward_normed), nor is the MLP's (mlp).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> project_qkv(const Qwen2Layer& l, const at::Tensor& h,
                                                             const at::Tensor& cos, const at::Tensor& sin) const;
  // The projections q, k, v (B, T, heads * D each) -> q (B, nh, T, D), k and v (B, nkv, T, D),
  // RoPE applied to q and k.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> rotate_qkv(const at::Tensor& q, const at::Tensor& k,
                                                            const at::Tensor& v, const at::Tensor& cos,
                                                            const at::Tensor& sin) const;
  // allowed: (B, 1, T, T_past + T) bool (true = may attend), or undefined for plain causal.
  // packed: rows packed in a (1, T) x (no cache), attention within each row.
  // attention(input_norm(h)), without the residual.
  at::Tensor attention(const Qwen2Layer& l, const at::Tensor& h, const at::Tensor& cos,
                       const at::Tensor& sin, KVCache* cache, int layer,
                       const at::Tensor& allowed = {}, const PackedRows* packed = nullptr) const;
  // mlp(post_attention_norm(h)), without the residual. recompute: the backward recomputes
  // gate and up instead of keeping them (LoraLinear::forward_mlp).
  at::Tensor mlp(const Qwen2Layer& l, const at::Tensor& h, bool recompute = false) const;
  // The MLP of the normed input x (what mlp computes after the norm), no recompute.
  at::Tensor mlp_of_normed(const Qwen2Layer& l, const at::Tensor& x) const;
  // (h + delta, rms_norm(h + delta, w)) without autograd: one kernel when fused (decoding).
  std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& w) const;

  Qwen2Config cfg_;
  at::ScalarType dtype_;
  at::Device device_;
  at::Tensor embed_;
  std::vector<Qwen2Layer> layers_;
  at::Tensor final_norm_;
  at::Tensor lm_head_;  // undefined when tie_word_embeddings
  LoraAdapters lora_;
  bool fused_ = false;
  // Where the layers of RecomputePlan::offload keep their activations (made at first use).
  mutable std::shared_ptr<ActivationOffload> offload_;
};

// (cos, sin), each (T, head_dim) in `dtype`, for positions offset..offset+T-1 (HF rotate_half
// convention: inv_freq in fp32, emb = cat(freqs, freqs)).
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, double theta, int64_t offset,
                                              int64_t length, at::ScalarType dtype,
                                              at::Device device);
// The same for any int64 positions tensor (..., T): tables of shape (..., T, head_dim).
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, double theta, const at::Tensor& positions,
                                              at::ScalarType dtype);



}  // namespace r1dist
