#include "r1dist/config/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <vector>

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

bool RecomputePlan::offloaded(int64_t layer, int64_t total_layers) const {
  const int64_t n = total_layers - layers, o = std::clamp<int64_t>(offload, 0, std::max<int64_t>(n, 0));
  if (layer < layers || layer >= total_layers || o == 0) return false;
  // Every n / o-th of them (the copies to the host get the layers between to overlap).
  const int64_t i = layer - layers;
  return (i + 1) * o / n > i * o / n;
}

std::string RecomputePlan::describe(int64_t total_layers) const {
  std::string s = std::to_string(layers) + " recompute the whole layer" +
                  (offload_inputs && layers > 0 ? " (their inputs in host memory)" : "") + ", " +
                  std::to_string(mlp) + " only the MLP, " + std::to_string(kept(total_layers)) +
                  " keep every activation";
  if (offload > 0)
    s += "; " + std::to_string(std::min(offload, total_layers - layers)) +
         " of the layers not recomputed keep activations in host memory" +
         (offload_attention ? ", the attention's too" : "");
  return s;
}

namespace {

// A layer's forward multiply-adds per token: q, k, v, o; gate, up, down; causal attention's two
// products over seq / 2 keys on average. The attention is heads x head_dim wide (q_dim), which
// config.json's head_dim can set apart from hidden_size.
double layer_macs_per_token(const Qwen2Config& m, int64_t seq_len) {
  const double h = double(m.hidden_size), inter = double(m.intermediate_size), kv = double(m.kv_dim()),
               q = double(m.q_dim());
  return h * (q + 2.0 * kv) + q * h + 3.0 * h * inter + double(seq_len) * q;
}

}  // namespace

double layer_forward_flops(const Qwen2Config& m, const Config& cfg) {
  return 2.0 * layer_macs_per_token(m, cfg.data.max_seq_len) * double(cfg.train.micro_batch) *
         double(cfg.data.max_seq_len);
}

double attention_recompute_share(const Qwen2Config& m, int64_t seq_len) {
  return double(seq_len) * double(m.q_dim()) / layer_macs_per_token(m, seq_len);
}

double mlp_recompute_share(const Qwen2Config& m, int64_t seq_len) {
  return 2.0 * double(m.hidden_size) * double(m.intermediate_size) / layer_macs_per_token(m, seq_len);
}

namespace {

// The estimate under each plan: the parts no plan changes computed once (the planner asks for
// thousands of plans).
class Estimator {
 public:
  Estimator(const Qwen2Config& m, const Config& cfg, LayerPath path);
  MemoryEstimate at(const RecomputePlan& plan) const;

 private:
  MemoryEstimate fixed_;
  int64_t layers_ = 0;
  double tokens_ = 0, h_ = 0, inter_ = 0, kv_ = 0, q_ = 0, e_ = 0, one_layer_ = 0, mlp_layer_ = 0;
  bool fused_ = true;
};

Estimator::Estimator(const Qwen2Config& m, const Config& cfg, LayerPath path) {
  // Doubles throughout: the products of absurd settings (micro_batch 1e9) must not overflow.
  const double e = cfg.model.dtype == ComputeDtype::fp32 ? 4.0 : 2.0;
  const double h = double(m.hidden_size), inter = double(m.intermediate_size);
  const double vocab = double(m.vocab_size);
  const double embed = vocab * h * (m.tie_word_embeddings ? 1.0 : 2.0);
  const double projections = double(base_param_count(m)) - embed;
  MemoryEstimate& est = fixed_;
  // NF4: 4 bits per weight + one absmax byte per 64 weights (double quant) + fp32 scales.
  const double per_weight = cfg.quant.mode == QuantMode::nf4 ? 0.5 + 1.0 / 64 + 4.0 / (64 * 256) : e;
  est.weights = projections * per_weight + embed * e;
  // fp32 adapters, gradients and AdamW's two moments, and the adapters' cast to the compute
  // dtype (AdapterCast) below fp32.
  est.adapters = double(lora_param_count(m, cfg.lora.r, cfg.lora.targets)) * (4.0 * 4.0 + (e < 4.0 ? e : 0.0));
  const double tokens = double(cfg.train.micro_batch) * double(cfg.data.max_seq_len);
  // One layer's saved tensors on the fused path (tensor/fused_ops.h; the CUDA default): the
  // layer's input and the attention's residual sum (which the norms' backward needs; their
  // outputs are rebuilt, LoraLinear::forward_normed), q, k and v after RoPE (grouped: k and
  // v are kv-wide), the attention output (also o_proj's input), gate and up (the SwiGLU
  // product is recomputed): 2 hidden-wide, 2 q_dim-wide (q and the attention output;
  // hidden-wide in the presets), 2 kv-wide and 2 intermediate-wide per token, and 4% for what
  // the allocator holds beside them (fitted to the peaks measured on an H200 for the 1.5B, 7B
  // and 14B presets: test_memory_estimate.cpp). The plain ATen forms also keep
  // the norms' outputs, fp32 and activation temporaries: about 10 hidden-wide and 3
  // intermediate-wide (above the 14B v6 peak measured with them). A layer that recomputes its
  // MLP (LoraLinear::forward_mlp) keeps neither gate nor up.
  const double kv = double(m.kv_dim()), q = double(m.q_dim());
  const bool fused = path == LayerPath::fused;
  const double one_layer =
      fused ? tokens * (2.0 * h + 2.0 * q + 2.0 * kv + 2.0 * inter) * e * 1.04 : tokens * (10.0 * h + 3.0 * inter) * e;
  const double mlp_layer = fused ? tokens * (2.0 * h + 2.0 * q + 2.0 * kv) * e * 1.04 : tokens * 10.0 * h * e;
  // Beside the kept activations, at one time either the loss (model/lm_loss.h: on the fused
  // path one chunk's logits in the compute dtype and, in its backward, two hidden-wide
  // gradients; on the plain path an fp32 chunk beside the compute-dtype one, 8 bytes a logit)
  // or one layer's backward: the gradients of
  // gate, up and their product plus two more intermediate-wide and two hidden-wide buffers,
  // and one dequantised MLP weight (fitted to the peaks measured with layer checkpointing,
  // where it is larger than the loss chunk: the 7B 8192 x 1, the 14B 8192 x 2 and, since the
  // loss kernels, the 1.5B 8192 x 1). A layer that recomputes its MLP holds its gate and up
  // there instead of among the kept activations.
  const double chunk = std::min(tokens, double(kLossChunkTokens)) * vocab;
  const double loss = fused ? chunk * e + 2.0 * tokens * h * e : chunk * (4.0 + 4.0);
  const double layer_backward = tokens * (2.0 * h + 5.0 * inter) * e + inter * h * e;
  est.workspace = std::max(loss, layer_backward);
  layers_ = m.num_hidden_layers;
  tokens_ = tokens, h_ = h, inter_ = inter, kv_ = kv, q_ = q, e_ = e, one_layer_ = one_layer, mlp_layer_ = mlp_layer;
  fused_ = fused;
}

MemoryEstimate Estimator::at(const RecomputePlan& plan) const {
  MemoryEstimate est = fixed_;
  const double tokens = tokens_, h = h_, inter = inter_, e = e_, one_layer = one_layer_, mlp_layer = mlp_layer_;
  const double layers = double(layers_);
  const bool fused = fused_;
  // A recomputed layer keeps its input; while one is recomputed, it holds one layer's
  // activations besides.
  const double recomputed = double(plan.layers), mlp = double(plan.mlp), kept = layers - recomputed - mlp;
  est.activations = recomputed * tokens * h * e + mlp * mlp_layer + kept * one_layer + (recomputed > 0 ? one_layer : 0.0);
  // A layer of plan.offload (fused path) keeps its input, the residual sum and, when kept,
  // gate and up in host memory: 2 hidden-wide (+ 2 intermediate-wide) values per token less
  // here; with plan.offload_attention everything it keeps (q, k, v and the attention output
  // besides); a recomputed layer of plan.offload_inputs its input (one hidden-wide). At most
  // kOffloadGroupsInFlight such layers' worth are on the device at once (on their way to the
  // host in the forward, back in the backward).
  if (fused && (plan.offload > 0 || plan.offload_inputs)) {
    const double attention = plan.offload_attention ? tokens * (2.0 * q_ + 2.0 * kv_) * e : 0.0;
    const double part_mlp = tokens * 2.0 * h * e + attention,
                 part_kept = tokens * (2.0 * h + 2.0 * inter) * e + attention;
    double moved = 0, moved_here = 0, largest = 0;
    for (int64_t i = 0; i < layers_; ++i) {
      double part = 0, slack = 1.04;  // the kept activations' allocator share (above)
      if (plan.input_offloaded(i)) {
        part = tokens * h * e;
        slack = 1.0;
      } else if (plan.offloaded(i, layers_)) {
        part = i < plan.layers + plan.mlp ? part_mlp : part_kept;
      }
      moved += part;
      moved_here += part * slack;
      largest = std::max(largest, part * slack);
    }
    est.activations += double(kOffloadGroupsInFlight) * largest - moved_here;
    est.host = moved;
  }
  est.plan = plan;
  return est;
}

MemoryEstimate estimate_with(const Qwen2Config& m, const Config& cfg, LayerPath path, const RecomputePlan& plan) {
  return Estimator(m, cfg, path).at(plan);
}

// plan_cost for a plan that moves `host` bytes per forward.
double cost_of(const Qwen2Config& m, const Config& cfg, const RecomputePlan& plan, double host,
               const OffloadRates& rates) {
  const double share = mlp_recompute_share(m, cfg.data.max_seq_len);
  double recompute = double(plan.layers) + share * double(plan.mlp);
  if (plan.offload_attention) {
    int64_t offloaded = 0;
    for (int64_t i = 0; i < m.num_hidden_layers; ++i) offloaded += plan.offloaded(i, m.num_hidden_layers);
    recompute += double(offloaded) * attention_recompute_share(m, cfg.data.max_seq_len);
  }
  if (host <= 0 || !rates.known()) return recompute;
  // The bytes the link moves while one layer's forward computes.
  const double layer_s = layer_forward_flops(m, cfg) / rates.flops_per_s;
  const double link = host / (rates.link_bytes_per_s * layer_s), layers = double(m.num_hidden_layers);
  // The forward computes every layer once; the backward about twice that plus what it recomputes.
  return recompute + std::max(0.0, link - layers) + std::max(0.0, link - (2.0 * layers + recompute));
}

}  // namespace

double plan_cost(const Qwen2Config& m, const Config& cfg, const RecomputePlan& plan, const OffloadRates& rates) {
  return cost_of(m, cfg, plan, estimate_with(m, cfg, LayerPath::fused, plan).host, rates);
}

RecomputePlan recompute_plan(const Qwen2Config& m, const Config& cfg, LayerPath path, const OffloadRates& rates) {
  const int64_t layers = m.num_hidden_layers;
  // Offload applies to the fused path (the GPU's) only.
  const bool fused = path == LayerPath::fused;
  const int64_t off = fused ? std::max<int64_t>(cfg.train.offload_layers, 0) : 0;
  const bool inputs = fused && cfg.train.offload_recomputed_inputs, attn = fused && cfg.train.offload_attention;
  if (cfg.train.checkpointing == Checkpointing::none) return {0, 0, off, inputs, attn};
  if (cfg.train.memory_budget_gb <= 0) {
    const int64_t keep = std::min(layers, std::max<int64_t>(cfg.train.keep_layers, 0));
    const int64_t mlp = std::min(layers - keep, std::max<int64_t>(cfg.train.recompute_mlp_layers, 0));
    return {layers - keep - mlp, mlp, off, inputs, attn};
  }
  // For each count R of recomputed layers, the most kept layers that fit with the rest
  // recomputing their MLP (a kept layer costs more memory than an MLP one, so the estimate
  // grows with every layer kept); the plan that recomputes least wins, the smaller estimate
  // between equals. Keeping every layer drops the buffer of the layer being recomputed, so it
  // can cost less than recomputing one. None fits: every layer recomputed (check_memory_fits
  // refuses that case).
  const double budget = cfg.train.memory_budget_gb * 1e9;
  const Estimator estimator(m, cfg, path);
  auto fits = [&](RecomputePlan p) { return estimator.at(p).total() <= budget; };
  // The most `kept` in [0, n] with fits(plan(kept)) (the estimate grows with each), -1: none.
  auto most_kept = [&](int64_t n, auto plan) {
    int64_t lo = -1, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (fits(plan(mid))) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  if (path == LayerPath::plain) {  // whole layers only
    if (fits({})) return {};
    const int64_t kept = most_kept(layers - 1, [&](int64_t k) { return RecomputePlan{layers - k, 0}; });
    return {layers - std::max<int64_t>(kept, 0), 0};
  }
  // "auto": every count of offloaded layers beside each count of recomputed ones, with and
  // without their attention and the recomputed layers' inputs, within the host memory one
  // rank may pin.
  const bool choose = cfg.train.offload == OffloadChoice::automatic && rates.known();
  const std::vector<bool> both{false, true};
  RecomputePlan best{layers, 0, off, inputs, attn};
  double best_cost = double(layers) + 1.0, best_host = 0, best_bytes = 0;
  for (const bool in : choose ? both : std::vector<bool>{inputs})
    for (const bool at : choose ? both : std::vector<bool>{attn})
      for (int64_t r = 0; r <= layers; ++r) {
        const int64_t rest = layers - r;
        for (int64_t o = choose ? 0 : off; o <= (choose ? rest : off); ++o) {
          if (at && o == 0 && choose) continue;  // the same plan as without
          const int64_t kept = most_kept(rest, [&](int64_t k) { return RecomputePlan{r, rest - k, o, in, at}; });
          if (kept < 0) continue;
          const RecomputePlan p{r, rest - kept, o, in, at};
          const auto est = estimator.at(p);
          if (choose && est.host > rates.host_bytes) continue;
          const double cost = cost_of(m, cfg, p, est.host, rates), bytes = est.total();
          if (cost < best_cost - 1e-9 ||
              (cost < best_cost + 1e-9 && (est.host < best_host - 1 || (est.host < best_host + 1 && bytes < best_bytes)))) {
            best = p;
            best_cost = cost;
            best_host = est.host;
            best_bytes = bytes;
          }
          if (o == rest) break;
        }
      }
  return best;
}

Config resolve_checkpointing(const Config& cfg, double capacity_bytes) {
  Config out = cfg;
  if (cfg.train.checkpointing != Checkpointing::automatic) return out;
  out.train.checkpointing = Checkpointing::layer;
  if (capacity_bytes > 0 && cfg.train.memory_budget_gb <= 0 && cfg.train.keep_layers <= 0 &&
      cfg.train.recompute_mlp_layers <= 0)
    out.train.memory_budget_gb = kAutoBudgetShare * capacity_bytes / 1e9;
  return out;
}

MemoryEstimate estimate_training_memory(const Qwen2Config& m, const Config& cfg, LayerPath path,
                                        const OffloadRates& rates) {
  return estimate_with(m, cfg, path, recompute_plan(m, cfg, path, rates));
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
