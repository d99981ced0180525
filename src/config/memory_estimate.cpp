#include "r1dist/config/memory_estimate.h"

#include <algorithm>
#include <cstdio>

#include "r1dist/base/error.h"

namespace r1dist {

namespace {

std::string gb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", bytes / 1e9);
  return b;
}

std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace

std::string MemoryEstimate::describe() const {
  return gb(total()) + " GB (base weights " + gb(weights) + ", adapters + AdamW " + gb(adapters) + ", activations " +
         gb(activations) + ", workspace " + gb(workspace) + ")";
}

namespace {

// The estimate when the last `kept` layers keep their activations (all of them without
// layer checkpointing).
MemoryEstimate estimate_keeping(const Qwen2Config& m, const Config& cfg, LayerPath path, int64_t kept_layers) {
  // Doubles throughout: the products of absurd settings (micro_batch 1e9) must not overflow.
  const double e = cfg.model.dtype == ComputeDtype::fp32 ? 4.0 : 2.0;
  const double h = double(m.hidden_size), inter = double(m.intermediate_size), layers = double(m.num_hidden_layers);
  const double vocab = double(m.vocab_size);
  const double embed = vocab * h * (m.tie_word_embeddings ? 1.0 : 2.0);
  const double projections = double(base_param_count(m)) - embed;
  MemoryEstimate est;
  // NF4: 4 bits per weight + one absmax byte per 64 weights (double quant) + fp32 scales.
  const double per_weight = cfg.quant.mode == QuantMode::nf4 ? 0.5 + 1.0 / 64 + 4.0 / (64 * 256) : e;
  est.weights = projections * per_weight + embed * e;
  est.adapters = double(lora_param_count(m, cfg.lora.r, cfg.lora.targets)) * 4.0 * 4.0;
  const double tokens = double(cfg.train.micro_batch) * double(cfg.data.max_seq_len);
  // One layer's saved tensors on the fused path (tensor/fused_ops.h; the CUDA default): the
  // layer's input and the attention's residual sum (which the norms' backward needs; their
  // outputs are rebuilt, LoraLinear::forward_normed), q, k and v after RoPE (grouped: k and
  // v are kv-wide), the attention output (also o_proj's input), gate and up (the SwiGLU
  // product is recomputed): 4 hidden-wide, 2 kv-wide and 2 intermediate-wide per token, and
  // 4% for what the allocator holds beside them (fitted to the peaks measured on an H200 for
  // the 1.5B, 7B and 14B presets: test_memory_estimate.cpp). The plain ATen forms also keep
  // the norms' outputs, fp32 and activation temporaries: about 10 hidden-wide and 3
  // intermediate-wide (above the 14B v6 peak measured with them).
  const double kv = double(m.kv_dim());
  const double one_layer = path == LayerPath::fused ? tokens * (4.0 * h + 2.0 * kv + 2.0 * inter) * e * 1.04
                                                    : tokens * (10.0 * h + 3.0 * inter) * e;
  // Layer checkpointing keeps each recomputed layer's input plus one layer being recomputed;
  // train.keep_layers of them keep everything instead.
  const double kept = double(kept_layers);
  est.activations = (layers - kept) * tokens * h * e + kept * one_layer + (kept < layers ? one_layer : 0.0);
  // Beside the kept activations, at one time either the loss (one chunk's logits in fp32 and
  // the log-sum-exp's fp32 buffer; model/lm_loss.h) or one layer's backward: the gradients of
  // gate, up and their product plus one more intermediate-wide and two hidden-wide buffers,
  // and one dequantised MLP weight (fitted to the 7B 8192 x 1 and the 14B 8192 x 2 peaks
  // measured with layer checkpointing, where it is larger than the loss chunk).
  const double loss = std::min(tokens, double(kLossChunkTokens)) * vocab * (4.0 + 4.0);
  const double layer_backward = tokens * (2.0 * h + 4.0 * inter) * e + inter * h * e;
  est.workspace = std::max(loss, layer_backward);
  est.kept_layers = kept_layers;
  return est;
}

}  // namespace

int64_t kept_layers(const Qwen2Config& m, const Config& cfg, LayerPath path) {
  const int64_t layers = m.num_hidden_layers;
  if (cfg.train.checkpointing == Checkpointing::none) return layers;
  if (cfg.train.memory_budget_gb <= 0) return std::min(layers, std::max<int64_t>(cfg.train.keep_layers, 0));
  // Keeping every layer also drops the buffer of the layer being recomputed, so it can cost
  // less than keeping all but one; below that the estimate grows with every kept layer: the
  // most that fit the budget (0 when none do; check_memory_fits refuses that case).
  const double budget = cfg.train.memory_budget_gb * 1e9;
  if (estimate_keeping(m, cfg, path, layers).total() <= budget) return layers;
  int64_t lo = 0, hi = layers - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (estimate_keeping(m, cfg, path, mid).total() <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

Config resolve_checkpointing(const Config& cfg, double capacity_bytes) {
  Config out = cfg;
  if (cfg.train.checkpointing != Checkpointing::automatic) return out;
  out.train.checkpointing = Checkpointing::layer;
  if (capacity_bytes > 0 && cfg.train.memory_budget_gb <= 0 && cfg.train.keep_layers <= 0)
    out.train.memory_budget_gb = kAutoBudgetShare * capacity_bytes / 1e9;
  return out;
}

MemoryEstimate estimate_training_memory(const Qwen2Config& m, const Config& cfg, LayerPath path) {
  return estimate_keeping(m, cfg, path, kept_layers(m, cfg, path));
}

void check_memory_fits(const MemoryEstimate& est, double capacity_bytes, const std::string& device_name,
                       const Config& cfg) {
  if (cfg.train.memory_budget_gb > 0 && est.total() > cfg.train.memory_budget_gb * 1e9)
    throw UsageError("train.memory_budget_gb = " + number(cfg.train.memory_budget_gb) +
                     " is below what this config needs with every layer recomputed: an estimated " + est.describe() +
                     " per rank\nHINT: raise train.memory_budget_gb, or lower train.micro_batch or data.max_seq_len");
  if (capacity_bytes <= 0 || est.total() <= capacity_bytes) return;
  const std::string head = "this config needs an estimated " + est.describe() + " per rank; " + device_name + " has " +
                           gb(capacity_bytes) + " GB. ";
  // Name what drives it: the model itself (its weights and the vocabulary-wide loss chunk do
  // not shrink with the batch) or the batch's activations.
  const double batch_part = est.activations;
  if (est.weights + est.adapters >= batch_part || est.workspace >= batch_part)
    throw UsageError(head + "Driven by the model itself (" + cfg.model.path +
                     "/config.json: its weights" + (est.workspace >= batch_part ? " and its vocabulary, whose logits the loss holds" : "") +
                     "), not by the batch\nHINT: this model does not fit this device; use a smaller model, quant.mode = "
                     "\"nf4\", or a device with more memory");
  throw UsageError(head + "Driven by train.micro_batch = " + std::to_string(cfg.train.micro_batch) +
                   " x data.max_seq_len = " + std::to_string(cfg.data.max_seq_len) +
                   " tokens per forward pass, train.checkpointing = \"" + to_string(cfg.train.checkpointing) +
                   "\"\nHINT: lower train.micro_batch (raise train.grad_accum to keep the global batch) or "
                   "data.max_seq_len" +
                   std::string(cfg.train.checkpointing == Checkpointing::none ? ", or set train.checkpointing = \"auto\"" : ""));
}

}  // namespace r1dist
