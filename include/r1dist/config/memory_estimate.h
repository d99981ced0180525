// What one training rank needs in device memory, estimated from the model's shape and the
// run's settings before anything is allocated, so that a config that cannot fit is refused
// with the figures instead of failing (or swapping) after minutes of loading. An estimate:
// it counts the big buffers (docs/RELIABILITY.md has the formula and how it compares with
// measured peaks), not the allocator's slack.
#pragma once
#include <cstdint>
#include <string>

#include "r1dist/config/config.h"
#include "r1dist/formats/qwen2_config.h"

namespace r1dist {

// Tokens per chunk of the trainer's lm_head + cross-entropy (model/lm_loss.h): the logits
// of at most this many tokens exist at once. The loss runs while every kept activation is
// still held, so its chunk adds to the step's peak: 1024 x 151,936 logits are 0.3 GB in
// bf16 (0.6 GB in fp32 where the loss kernels do not run; 4096 fp32 were 2.5 GB, and their
// softmax as much again). 1024 rows still make the lm_head
// GEMM large (M 1024, N 151,936): the loss was 2.6% of a 14B step with 4096
// (docs/PERFORMANCE.md).
constexpr int64_t kLossChunkTokens = 1024;

// Offloaded layers (RecomputePlan::offload) whose activations may be on the device at once
// besides the ones kept there: on their way to the host in the forward, back in the backward.
constexpr int64_t kOffloadGroupsInFlight = 2;

// Which decoder layers recompute what in the backward, the layers in order: the first
// `layers` keep only their input and recompute the whole layer; the next `mlp` keep the
// attention's activations and recompute only the MLP's gate and up projections (about half
// a layer's forward for more than half of its memory at 8192 tokens); the rest keep every
// activation. Of the layers not recomputed whole, `offload` (spread evenly over them) keep
// their input, the attention's residual sum and, unless they recompute their MLP, gate and up
// in page-locked host memory until the backward (tensor/offload.h: train.offload_layers),
// with `offload_attention` also q, k, v and the attention's output (the attention recomputed
// from them in the backward: nothing of those layers stays on the device); with
// `offload_inputs` the layers recomputed whole keep their input there too
// (train.offload_recomputed_inputs). Gradients are the same under every plan.
struct RecomputePlan {
  int64_t layers = 0;
  int64_t mlp = 0;
  int64_t offload = 0;
  bool offload_inputs = false;
  bool offload_attention = false;
  int64_t kept(int64_t total_layers) const { return total_layers - layers - mlp; }
  // Whether `layer` is one of the layers not recomputed whole that offload their activations.
  bool offloaded(int64_t layer, int64_t total_layers) const;
  // Whether `layer` is recomputed whole and keeps its input in host memory.
  bool input_offloaded(int64_t layer) const { return offload_inputs && layer >= 0 && layer < layers; }
  // "40 recompute the whole layer, 8 only the MLP, 0 keep every activation" (+ "; their
  // inputs in host memory" + "; 6 of the layers not recomputed keep activations in host memory"
  // + ", the attention's too")
  std::string describe(int64_t total_layers) const;
};

struct MemoryEstimate {
  double weights = 0;      // the frozen base (NF4 codes + scales, or dense), embeddings, lm_head
  double adapters = 0;     // LoRA parameters, their gradients and both AdamW moments (fp32)
  double activations = 0;  // what the backward keeps (per layer inputs with checkpointing) + one layer
  double workspace = 0;    // the larger of one loss chunk's fp32 logits + softmax and one layer's backward buffers
  RecomputePlan plan;      // what the backward recomputes (nothing without layer checkpointing)
  double host = 0;         // page-locked host memory of what the plan offloads, not in total()
  double total() const { return weights + adapters + activations + workspace; }
  // "24.2 GB (base weights 9.9, adapters + AdamW 1.1, activations 11.4, workspace 1.8)"
  std::string describe() const;
};

// What moving activations to the host costs on a device (train.offload = "auto"): the host
// link's speed, the rate of the layers' forward the copies overlap with (FLOPs per second as
// layer_forward_flops counts them), and the page-locked memory one rank may take. Zeros:
// unknown (the CPU), and "auto" offloads nothing.
struct OffloadRates {
  double link_bytes_per_s = 0;
  double flops_per_s = 0;
  double host_bytes = 0;
  bool known() const { return link_bytes_per_s > 0 && flops_per_s > 0; }
};

// How a decoder layer computes, which sets what it keeps for the backward: the fused kernels
// (tensor/fused_ops.h, the CUDA default) or the plain ATen forms (the CPU, R1DIST_FUSED=0).
enum class LayerPath { fused, plain };

MemoryEstimate estimate_training_memory(const Qwen2Config& model, const Config& cfg,
                                        LayerPath path = LayerPath::fused, const OffloadRates& rates = {});

// What the backward recomputes: nothing without layer checkpointing; with train.keep_layers
// and train.recompute_mlp_layers (each capped at the layers left), the last keep_layers keep
// everything, the recompute_mlp_layers before them recompute their MLP and the rest the whole
// layer; with train.memory_budget_gb, the plan whose estimate fits that budget with the least
// recomputation (mlp_recompute_share), every layer recomputed when none fits. With
// train.offload = "auto" and known `rates` the budget's plan also chooses the offloaded layers
// and the recomputed layers' inputs: the least plan_cost, then the least host memory, within
// rates.host_bytes. The plain path recomputes whole layers only and offloads nothing.
RecomputePlan recompute_plan(const Qwen2Config& model, const Config& cfg, LayerPath path = LayerPath::fused,
                             const OffloadRates& rates = {});

// What `plan` adds to a step, in units of one layer's forward: each layer recomputed whole 1,
// each MLP mlp_recompute_share, each attention recomputed (offload_attention)
// attention_recompute_share, and, with known `rates`, the forward's wait for the host link
// (the bytes it moves beyond what the link carries while the layers compute; likewise for the
// way back in the backward). Fitted to the 14B at 8192 tokens on an H200 (docs/PERFORMANCE.md).
double plan_cost(const Qwen2Config& model, const Config& cfg, const RecomputePlan& plan, const OffloadRates& rates);

// One layer's forward FLOPs at the step's shape (train.micro_batch x data.max_seq_len tokens):
// the projections and causal attention's two products, the unit plan_cost prices in.
double layer_forward_flops(const Qwen2Config& model, const Config& cfg);

// The share of a layer's forward that its attention's products cost (what a layer of
// RecomputePlan::offload_attention recomputes), from the multiply-adds per token at `seq_len`.
double attention_recompute_share(const Qwen2Config& model, int64_t seq_len);

// The share of a layer's forward that recomputing only its MLP's gate and up costs, from the
// multiply-adds per token at sequences of `seq_len` (the projections and causal attention).
double mlp_recompute_share(const Qwen2Config& model, int64_t seq_len);

// train.checkpointing = "auto" made concrete for a device of `capacity_bytes` (0 = unknown:
// the CPU): "layer", with train.memory_budget_gb = kAutoBudgetShare of the capacity unless
// memory_budget_gb or keep_layers is set (the estimate is within 0-12% above the measured
// peaks, docs/RELIABILITY.md, so the share leaves room for that and the allocator's slack).
// On the CPU every layer is recomputed, as with "layer". Other settings come back as they are.
constexpr double kAutoBudgetShare = 0.9;
Config resolve_checkpointing(const Config& cfg, double capacity_bytes);

// Refuses (UsageError) when the estimate exceeds `capacity_bytes` (the device's memory) or
// train.memory_budget_gb, naming the settings that drive it and the estimate's parts.
void check_memory_fits(const MemoryEstimate& e, double capacity_bytes, const std::string& device_name,
                       const Config& cfg);

}  // namespace r1dist
