#include "r1dist/model/qwen2.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdio>

#include "r1dist/base/error.h"
#include "r1dist/quant/nf4.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/offload.h"

namespace r1dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Attention without a cache over q4 (B, T, Hq, D), k4 and v4 (B, T, Hkv, D), the projections'
// own layout: within each packed row (the varlen kernel, `packed` without a mask), under the
// `allowed` mask (empty: none), or causal. Returns (B, T, Hq * D), o_proj's input.
at::Tensor attention_rows(const at::Tensor& q4, const at::Tensor& k4, const at::Tensor& v4, const at::Tensor& allowed,
                          const PackedRows* packed, double scale) {
  const int64_t b = q4.size(0), t = q4.size(1), width = q4.size(2) * q4.size(3);
  const bool masked = allowed.defined() && allowed.numel() > 0;
  if (packed && !masked)  // (T, H, D): the varlen kernel's layout; GQA needs no repeated keys
    return compat::varlen_causal_attention(q4[0], k4[0], v4[0], packed->cu_seqlens, packed->longest, scale)
        .reshape({1, t, width});
  const auto q = q4.transpose(1, 2), k = k4.transpose(1, 2), v = v4.transpose(1, 2);  // (B, H, T, D)
  auto out = masked ? compat::masked_attention(q, k, v, allowed, scale) : compat::causal_attention(q, k, v, scale);
  return out.transpose(1, 2).reshape({b, t, width});
}

// The attention of a layer that offloads the attention's activations too
// (ActivationOffload::attention_active, RecomputePlan::offload_attention): keeps q, k and v in
// host memory instead of the kernel's output and statistics, and recomputes the attention
// from them in the backward (the same inputs in the same layout: the same values).
struct OffloadedAttention : public torch::autograd::Function<OffloadedAttention> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q4, const at::Tensor& k4, const at::Tensor& v4,
                            const at::Tensor& allowed, const PackedRows* packed, double scale) {
    ctx->save_for_backward({offload_saved(ctx, "q", q4, true), offload_saved(ctx, "k", k4, true),
                            offload_saved(ctx, "v", v4, true), allowed});
    ctx->saved_data["packed"] = reinterpret_cast<int64_t>(packed);
    ctx->saved_data["scale"] = scale;
    // With gradients on, as without this function and as in the backward: the kernel that
    // scaled_dot_product_attention picks can depend on it. The graph is dropped at once.
    at::AutoGradMode on(true);
    return attention_rows(q4, k4, v4, allowed, packed, scale).detach();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const auto* packed = reinterpret_cast<const PackedRows*>(ctx->saved_data["packed"].toInt());
    auto q = restore_saved(ctx, "q", s[0]).detach().requires_grad_(true);
    auto k = restore_saved(ctx, "k", s[1]).detach().requires_grad_(true);
    auto v = restore_saved(ctx, "v", s[2]).detach().requires_grad_(true);
    at::Tensor out;
    {
      at::AutoGradMode on(true);
      out = attention_rows(q, k, v, s[3], packed, ctx->saved_data["scale"].toDouble());
    }
    auto g = torch::autograd::grad({out}, {q, k, v}, {grads[0]});
    return {g[0], g[1], g[2], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

LoraLinear& Qwen2Layer::proj(const std::string& m) {
  if (m == "q_proj") return q;
  if (m == "k_proj") return k;
  if (m == "v_proj") return v;
  if (m == "o_proj") return o;
  if (m == "gate_proj") return gate;
  if (m == "up_proj") return up;
  if (m == "down_proj") return down;
  throw Error("unknown projection '" + m + "'");
}

Qwen2Model::Qwen2Model(const Qwen2Config& cfg, at::ScalarType dtype, at::Device device, bool allocate)
    : cfg_(cfg), dtype_(dtype), device_(device) {
  cfg_.validate("Qwen2Model");
  fused_ = fused::on_by_default(device);
  layers_.resize(cfg.num_hidden_layers);
  if (!allocate) return;
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (const auto& w : qwen2_weight_table(cfg_)) weight(w) = at::empty(w.shape, opts);
}

std::vector<AdapterRef> Qwen2Model::projections(const std::vector<std::string>& modules) {
  const auto& all = projection_names();
  for (const auto& m : modules)
    if (std::find(all.begin(), all.end(), m) == all.end())
      throw UsageError("lora target '" + m + "' is not a Qwen2 projection");
  std::vector<AdapterRef> out;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i)
    for (const auto& m : all) {
      if (std::find(modules.begin(), modules.end(), m) == modules.end()) continue;
      const char* group = (m == "gate_proj" || m == "up_proj" || m == "down_proj") ? "mlp." : "self_attn.";
      out.push_back({"model.layers." + std::to_string(i) + "." + group + m, &layers_[size_t(i)].proj(m)});
    }
  return out;
}

void Qwen2Model::attach_lora(const LoraSpec& spec, const std::vector<std::string>& targets, uint64_t seed) {
  attach_lora([spec](const std::string&) { return spec; }, targets, seed);
}

void Qwen2Model::attach_lora(const LoraSpecFor& spec_for, const std::vector<std::string>& targets, uint64_t seed) {
  check(!lora_.attached(), "attach_lora: the model already has adapters");
  lora_ = LoraAdapters::attach(projections(targets), spec_for, seed, device_);
}

at::Tensor& Qwen2Model::weight(const WeightSpec& w) {
  switch (w.role) {
    case WeightRole::embedding: return embed_;
    case WeightRole::lm_head: return lm_head_;
    case WeightRole::projection: return layers_[size_t(w.layer)].proj(w.module).weight;
    case WeightRole::bias: return layers_[size_t(w.layer)].proj(w.module).bias;
    case WeightRole::norm:
      if (w.layer < 0) return final_norm_;
      if (w.module == "input_layernorm") return layers_[size_t(w.layer)].input_norm;
      if (w.module == "post_attention_layernorm") return layers_[size_t(w.layer)].post_norm;
      break;
  }
  throw Error("Qwen2Model: no tensor for " + w.name);
}

std::vector<std::pair<std::string, at::Tensor*>> Qwen2Model::named_weights() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (const auto& w : qwen2_weight_table(cfg_)) out.emplace_back(w.name, &weight(w));
  return out;
}

at::Tensor Qwen2Model::rms_norm(const at::Tensor& x, const at::Tensor& w) const {
  if (fused_) return fused::rms_norm(x, w, cfg_.rms_norm_eps);
  // fp32 statistics, cast back to the input dtype BEFORE the weight multiply (as HF). The
  // mean square comes from an fp32-accumulated norm of x and x is promoted inside the
  // product, so no fp32 copy of x is written (or kept for the backward).
  const double h = double(x.size(-1));
  const auto ms = at::linalg_vector_norm(x, 2, {-1}, /*keepdim=*/true, at::kFloat).pow(2) / h;
  return w * (x * at::rsqrt(ms + cfg_.rms_norm_eps)).to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, double theta, const at::Tensor& positions,
                                              at::ScalarType dtype) {
  auto longs = at::TensorOptions().dtype(at::kLong).device(positions.device());
  auto exponents = at::arange(0, head_dim, 2, longs).to(at::kFloat) / double(head_dim);
  auto inv_freq = 1.0 / at::pow(theta, exponents);                          // (D/2)
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;            // (..., T, D/2)
  auto emb = at::cat({freqs, freqs}, -1);                                    // (..., T, D)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, double theta, int64_t offset,
                                              int64_t length, at::ScalarType dtype,
                                              at::Device device) {
  auto pos = at::arange(offset, offset + length, at::TensorOptions().dtype(at::kLong).device(device));
  return rope_tables(head_dim, theta, pos, dtype);
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.slice(-1, h), x.slice(-1, 0, h)}, -1);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> Qwen2Model::project_qkv(const Qwen2Layer& l, const at::Tensor& h,
                                                                       const at::Tensor& cos,
                                                                       const at::Tensor& sin) const {
  if (fused_) {
    auto qkv = LoraLinear::forward_normed({&l.q, &l.k, &l.v}, h, l.input_norm, cfg_.rms_norm_eps);
    return rotate_qkv(qkv[0], qkv[1], qkv[2], cos, sin);
  }
  const auto x = rms_norm(h, l.input_norm);
  // q, k, v in statements of their own: the order LoRA dropout draws their masks in.
  auto q = l.q.forward(x);
  auto k = l.k.forward(x);
  return rotate_qkv(q, k, l.v.forward(x), cos, sin);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> Qwen2Model::rotate_qkv(const at::Tensor& q_in, const at::Tensor& k_in,
                                                                      const at::Tensor& v_in, const at::Tensor& cos,
                                                                      const at::Tensor& sin) const {
  const int64_t b = q_in.size(0), t = q_in.size(1), d = cfg_.head_dim;
  const int64_t nh = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads;
  const auto v = v_in.view({b, t, nkv, d}).transpose(1, 2);  // (B, nkv, T, D)
  if (fused_) {
    // RoPE on the projections' own (B, T, heads, D) layout; the transposes are views.
    auto q = fused::rope(q_in.view({b, t, nh, d}), cos, sin).transpose(1, 2);
    auto k = fused::rope(k_in.view({b, t, nkv, d}), cos, sin).transpose(1, 2);
    return {q, k, v};
  }
  auto q = q_in.view({b, t, nh, d}).transpose(1, 2);   // (B, nh, T, D)
  auto k = k_in.view({b, t, nkv, d}).transpose(1, 2);  // (B, nkv, T, D)
  return {q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v};
}

at::Tensor Qwen2Model::attention(const Qwen2Layer& l, const at::Tensor& h, const at::Tensor& cos,
                                 const at::Tensor& sin, KVCache* cache, int layer,
                                 const at::Tensor& allowed_in, const PackedRows* packed) const {
  const int64_t b = h.size(0), t = h.size(1), d = cfg_.head_dim;
  const int64_t nh = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads;
  const double scale = 1.0 / std::sqrt(double(d));
  auto [q, k, v] = project_qkv(l, h, cos, sin);
  at::Tensor allowed = allowed_in;
  if (packed) {
    check(!cache && b == 1, "Qwen2Model: packed rows are one (1, T) sequence without a cache");
    allowed = packed->allowed;  // undefined where the varlen kernel runs
  }
  if (!cache) {
    const auto q4 = q.transpose(1, 2), k4 = k.transpose(1, 2), v4 = v.transpose(1, 2);  // views
    if (fused_ && at::GradMode::is_enabled() && ActivationOffload::attention_active())
      return l.o.forward(OffloadedAttention::apply(q4, k4, v4, allowed.defined() ? allowed : at::empty({0}, h.options()),
                                                   packed, scale));
    return l.o.forward(attention_rows(q4, k4, v4, allowed, packed, scale));
  }
  if (cache->capacity > 0) {
    const int64_t end = cache->length + t;
    check(end <= cache->capacity, "KVCache: " + std::to_string(end) + " positions exceed its capacity of " +
                                      std::to_string(cache->capacity));
    if (!cache->k[layer].defined()) {
      // Zeros, not garbage: decode steps read masked columns too (weight 0, but 0 * NaN = NaN).
      try {
        cache->k[layer] = at::zeros({b, nkv, cache->capacity, d}, k.options());
        cache->v[layer] = at::zeros({b, nkv, cache->capacity, d}, v.options());
      } catch (const c10::Error& e) {
        const double gb = 2.0 * double(cfg_.num_hidden_layers) * double(b * nkv * d) * double(cache->capacity) *
                          double(k.element_size()) / 1e9;
        char need[64];
        std::snprintf(need, sizeof need, "%.3g GB", gb);
        throw Error("the KV cache of " + std::to_string(b) + (b == 1 ? " row x " : " rows x ") +
                    std::to_string(cache->capacity) + " positions (" + need + " for " +
                    std::to_string(cfg_.num_hidden_layers) + " layers) cannot be allocated on " + k.device().str() +
                    ": " + e.what_without_backtrace() +
                    "\nHINT: fewer new tokens (--max-new-tokens, eval.max_new_tokens) or fewer rows at once");
      }
    }
    cache->k[layer].narrow(2, cache->length, t).copy_(k);
    cache->v[layer].narrow(2, cache->length, t).copy_(v);
    k = cache->k[layer].narrow(2, 0, end);
    v = cache->v[layer].narrow(2, 0, end);
  } else {
    if (cache->k[layer].defined()) {
      k = at::cat({cache->k[layer], k}, 2);
      v = at::cat({cache->v[layer], v}, 2);
    }
    cache->k[layer] = k;
    cache->v[layer] = v;
  }
  auto out = allowed.defined() ? compat::masked_attention(q, k, v, allowed, scale)
                               : compat::causal_attention(q, k, v, scale);  // (B, nh, T, D)
  return l.o.forward(out.transpose(1, 2).reshape({b, t, nh * d}));
}

PackedRows packed_rows(const std::vector<int64_t>& row_lengths, at::Device device, at::ScalarType dtype) {
  check(!row_lengths.empty(), "packed_rows: no rows");
  int64_t total = 0;
  for (int64_t n : row_lengths) {
    check(n > 0, "packed_rows: a row of " + std::to_string(n) + " tokens");
    total += n;
  }
  std::vector<int64_t> pos, starts{0}, row_of;
  pos.reserve(size_t(total));
  PackedRows p;
  for (size_t r = 0; r < row_lengths.size(); ++r) {
    for (int64_t i = 0; i < row_lengths[r]; ++i) {
      pos.push_back(i);
      row_of.push_back(int64_t(r));
    }
    starts.push_back(starts.back() + row_lengths[r]);
    p.longest = std::max(p.longest, row_lengths[r]);
  }
  auto longs = at::TensorOptions().dtype(at::kLong);
  p.positions = at::tensor(pos, longs).view({1, total}).to(device);
  p.cu_seqlens = at::tensor(starts, longs).to(at::kInt).to(device);
  if (!compat::varlen_attention_applies(device, dtype)) {
    auto row = at::tensor(row_of, longs).to(device);
    auto col = at::arange(total, longs.device(device));
    p.allowed = (row.view({-1, 1}) == row.view({1, -1})).logical_and(col.view({1, -1}) <= col.view({-1, 1}))
                    .view({1, 1, total, total});
  }
  return p;
}

at::Tensor Qwen2Model::mlp(const Qwen2Layer& l, const at::Tensor& h, bool recompute) const {
  if (recompute) return LoraLinear::forward_mlp(l.gate, l.up, l.down, h, l.post_norm, cfg_.rms_norm_eps);
  if (fused_) {
    auto gate_up = LoraLinear::forward_normed({&l.gate, &l.up}, h, l.post_norm, cfg_.rms_norm_eps);
    return l.down.forward_swiglu(gate_up[0], gate_up[1]);
  }
  return mlp_of_normed(l, rms_norm(h, l.post_norm));
}

at::Tensor Qwen2Model::mlp_of_normed(const Qwen2Layer& l, const at::Tensor& x) const {
  // gate before up: the order LoRA dropout draws their masks in (as forward_normed and
  // forward_mlp do).
  const auto gate_up = LoraLinear::forward_group({&l.gate, &l.up}, x);
  return fused_ ? l.down.forward_swiglu(gate_up[0], gate_up[1]) : l.down.forward(at::silu(gate_up[0]) * gate_up[1]);
}

std::pair<at::Tensor, at::Tensor> Qwen2Model::add_norm(const at::Tensor& h, const at::Tensor& delta,
                                                       const at::Tensor& w) const {
  if (fused_) return fused::add_rms_norm(h, delta, w, cfg_.rms_norm_eps);
  auto sum = h + delta;
  return {sum, rms_norm(sum, w)};
}

at::Tensor Qwen2Model::hidden_states(const at::Tensor& ids, KVCache* cache, const at::Tensor& left_pad) const {
  check(ids.dim() == 2, "Qwen2Model: ids must be (batch, seq), got " + std::to_string(ids.dim()) +
                            " dims");
  const int64_t offset = cache ? cache->length : 0;
  const int64_t t = ids.size(1);
  if (cache && cache->k.empty()) {
    cache->k.resize(cfg_.num_hidden_layers);
    cache->v.resize(cfg_.num_hidden_layers);
    if (left_pad.defined()) cache->left_pad = left_pad.to(device_, at::kLong);
  }
  const at::Tensor pad = cache ? cache->left_pad : left_pad;
  at::Tensor cos, sin, allowed;
  if (pad.defined()) {
    check(pad.dim() == 1 && pad.size(0) == ids.size(0), "Qwen2Model: left_pad must be (batch)");
    auto longs = at::TensorOptions().dtype(at::kLong).device(device_);
    auto pad_b = pad.to(device_, at::kLong).view({-1, 1});                     // (B, 1)
    auto cols = at::arange(offset, offset + t, longs).view({1, -1});           // (1, T)
    std::tie(cos, sin) = rope_tables(cfg_.head_dim, cfg_.rope_theta, (cols - pad_b).clamp_min(0), dtype_);
    cos = cos.unsqueeze(1);                                                    // (B, 1, T, D)
    sin = sin.unsqueeze(1);
    // Query column i sees key column j <= i that is not a pad; a pad query sees itself only
    // (so that no softmax row is empty).
    auto q_col = cols.view({1, t, 1});
    auto k_col = at::arange(0, offset + t, longs).view({1, 1, -1});
    allowed = (k_col <= q_col).logical_and((k_col >= pad_b.view({-1, 1, 1})).logical_or(k_col == q_col));
    allowed = allowed.unsqueeze(1);                                            // (B, 1, T, T_k)
  } else {
    std::tie(cos, sin) = rope_tables(cfg_.head_dim, cfg_.rope_theta, offset, t, dtype_, device_);
  }
  auto out = through_layers(at::embedding(embed_, ids.to(device_, at::kLong)), [&](int i, const at::Tensor& h) {
    return layer_forward(i, h, cos, sin, nullptr, cache, allowed);
  });
  if (cache) cache->length += t;
  return out;
}

at::Tensor Qwen2Model::decode_step(const at::Tensor& ids, KVCache& cache, DecodeSlots& slots, int64_t span) const {
  const int64_t b = ids.size(0), d = cfg_.head_dim;
  const int64_t nh = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads, rep = nh / nkv;
  check(ids.dim() == 2 && ids.size(1) == 1, "decode_step: ids must be (batch, 1)");
  check(cache.capacity > 0 && int64_t(cache.k.size()) == cfg_.num_hidden_layers && cache.k[0].defined(),
        "decode_step: needs a cache with capacity, filled by a first hidden_states call");
  check(span > 0 && span <= cache.capacity, "decode_step: span outside the cache's capacity");
  slots.allowed.index_fill_(3, slots.column, true);
  const auto allowed = slots.allowed.narrow(3, 0, span);                       // (B, 1, 1, span)
  at::Tensor cos, sin;
  std::tie(cos, sin) = rope_tables(cfg_.head_dim, cfg_.rope_theta, slots.positions, dtype_);
  cos = cos.unsqueeze(1);                                                      // (B, 1, 1, D)
  sin = sin.unsqueeze(1);
  const double scale = 1.0 / std::sqrt(double(d));
  // Each residual add and the norm after it in one step (add_norm); n is the next norm's output.
  const int64_t layers = cfg_.num_hidden_layers;
  auto h = at::embedding(embed_, ids);
  auto n = rms_norm(h, layers_[0].input_norm);
  for (int64_t i = 0; i < layers; ++i) {
    const auto& l = layers_[size_t(i)];
    const auto qkv = LoraLinear::forward_group({&l.q, &l.k, &l.v}, n);
    // RoPE and the cache write (one kernel when fused); the rep query heads of a group become
    // rep query rows over the group's keys.
    at::Tensor qg;
    if (fused_) {
      qg = fused::rope_into_cache(qkv[0], qkv[1], qkv[2], cos, sin, cache.k[size_t(i)], cache.v[size_t(i)],
                                  slots.column)
               .view({b, nkv, rep, d});
    } else {
      auto [q, k, v] = rotate_qkv(qkv[0], qkv[1], qkv[2], cos, sin);
      cache.k[size_t(i)].index_copy_(2, slots.column, k);
      cache.v[size_t(i)].index_copy_(2, slots.column, v);
      qg = q.reshape({b, nkv, rep, d});
    }
    const auto keys = cache.k[size_t(i)].narrow(2, 0, span), values = cache.v[size_t(i)].narrow(2, 0, span);
    const auto out = fused_ && fused::decode_attention_enabled()
                         ? fused::decode_attention(qg, keys, values, allowed.view({b, span}), scale)
                         : compat::masked_attention(qg, keys, values, allowed, scale);  // (B, nkv, rep, D)
    std::tie(h, n) = add_norm(h, l.o.forward(out.reshape({b, 1, nh * d})), l.post_norm);
    std::tie(h, n) = add_norm(h, mlp_of_normed(l, n), i + 1 < layers ? layers_[size_t(i + 1)].input_norm : final_norm_);
  }
  slots.positions.add_(1);
  slots.column.add_(1);
#ifdef R1DIST_WITH_CUDA
  // From two rows on, the logits through the few-row kernel on tensor cores (one read of the
  // weight); at one row cuBLAS streams it as fast.
  const auto& w = cfg_.tie_word_embeddings ? embed_ : lm_head_;
  if (b >= 2 && nf4::gemv_enabled() && nf4::gemv_applies(n, nullptr, w, {}))
    return nf4::gemv_cuda(n, nullptr, w, {}).select(1, 0);
#endif
  return lm_head(n).select(1, 0);
}

at::Tensor Qwen2Model::lm_head(const at::Tensor& hidden) const {
  return at::linear(hidden, cfg_.tie_word_embeddings ? embed_ : lm_head_);
}


}  // namespace r1dist
