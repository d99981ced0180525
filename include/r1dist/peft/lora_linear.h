// LoraLinear: one projection y = x W^T (+ b) + B(A(dropout(x))) * scaling, with a frozen
// base W (NF4 or dense) and trainable fp32 adapters A (r, in) and B (out, r) (PEFT's layout).
// Four custom autograd functions, for the plain projection, the down projection of a
// SwiGLU (it recomputes its input from gate and up), the projections of one norm's output
// (forward_normed) and a whole MLP that recomputes gate and up (forward_mlp); each backward re-dequantises W for the input gradient and keeps only the
// input and the rank-r intermediate, never a dequantised weight.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "r1dist/quant/nf4.h"

namespace r1dist {

struct LoraSpec {
  int64_t r = 16;
  double alpha = 16;
  double dropout = 0.0;
  bool rslora = false;
  double scaling() const;  // alpha / r, or alpha / sqrt(r) with rslora
};

// The spec of one projection, by its PEFT module path (model.layers.3.self_attn.q_proj):
// PEFT's rank_pattern / alpha_pattern give some modules their own r and alpha.
using LoraSpecFor = std::function<LoraSpec(const std::string& module_path)>;

// The adapters of a model in the compute dtype: one cast of the whole flat fp32 buffer
// (LoraAdapters), made again only after the buffer changed. Its version counter, which the
// views A and B share, counts every in-place write (the optimizer's update, a checkpoint's
// load), so a cast is never stale; a step then casts once instead of at every use of A and B
// (thousands of small kernels per step and one per projection per decoded token).
class AdapterCast {
 public:
  explicit AdapterCast(at::Tensor flat) : flat_(std::move(flat)) {}
  // p, a view of the flat buffer (any other tensor is cast on its own), in dtype dt.
  at::Tensor of(const at::Tensor& p, at::ScalarType dt) const;

 private:
  at::Tensor flat_;
  mutable std::mutex mu_;  // the backward may run on autograd's device thread
  mutable at::Tensor cast_;
  mutable uint32_t version_ = 0;
};

class LoraLinear {
 public:
  // Frozen base: exactly one of `weight` (dense, compute dtype) or `qweight` (NF4) is set.
  at::Tensor weight;        // (out, in)
  nf4::NF4Tensor qweight;
  bool quantized = false;
  at::Tensor bias;          // (out) or undefined
  // Adapter: undefined when the projection is not a LoRA target. fp32 leaves.
  at::Tensor lora_A;        // (r, in)
  at::Tensor lora_B;        // (out, r)
  double scaling = 0.0;
  double dropout = 0.0;
  // Set by LoraAdapters::attach for A and B carved out of its flat buffer; null: cast at use.
  std::shared_ptr<const AdapterCast> adapter_cast;
  // lora_A or lora_B in dtype dt (adapter_cast's view, or a cast of its own).
  at::Tensor adapter_in(const at::Tensor& p, at::ScalarType dt) const;
  bool adapter_enabled = true;  // false: the base model (drift measurement without a copy)

  int64_t out_features() const;
  int64_t in_features() const;
  bool has_adapter() const { return lora_A.defined(); }
  // The base weight in `dtype` on its device (a transient dequantised copy for NF4).
  at::Tensor base_weight(at::ScalarType dtype) const;
  // Replaces the dense base by its NF4 form (frees the dense copy).
  void quantize(bool double_quant, const std::string& name);
  at::Tensor forward(const at::Tensor& x) const;
  // forward(silu(gate) * up) (down_proj of a SwiGLU MLP) without keeping the (.., in)
  // product for the backward: it is recomputed there from gate and up (tensor/fused_ops.h),
  // which the SwiGLU backward keeps anyway. Same values and gradients, one activation less.
  at::Tensor forward_swiglu(const at::Tensor& gate, const at::Tensor& up) const;
  // p->forward(x) for each of `projections` of one input x, in their order. Without a graph
  // (decoding) the few-row kernel takes all their base weights in one launch where it can
  // (nf4::gemv_cuda_parts); otherwise, and with gradients, one forward after the other.
  static std::vector<at::Tensor> forward_group(const std::vector<const LoraLinear*>& projections,
                                               const at::Tensor& x);
  // p->forward(fused::rms_norm(x, norm_weight, eps)) for each of `projections` (q/k/v of
  // attention, gate/up of the MLP), without keeping the norm's output for the backward: the
  // backward rebuilds it once from x (which the norm's backward keeps anyway) for all of
  // them and sums their input gradients in one buffer. Same values and gradients (up to the
  // order of that sum), one hidden-wide activation less per norm. norm_weight is frozen.
  // Where every projection has an adapter and none drops its input (lora_grouping()), their
  // adapters act as one stacked adapter: one product of n with [A_1; A_2; ...] in the
  // forward, one update of the input gradient and one product for the A gradients in the
  // backward (each reads a tokens x hidden tensor once instead of once per projection).
  static std::vector<at::Tensor> forward_normed(const std::vector<const LoraLinear*>& projections,
                                                const at::Tensor& x, const at::Tensor& norm_weight, double eps);
  // down.forward_swiglu(gate.forward(n), up.forward(n)) for n = fused::rms_norm(x, norm_weight,
  // eps), keeping only x and the adapters' rank-r products for the backward: it rebuilds n,
  // gate and up there (the same values bit for bit) and then runs the backward of the two
  // functions above in their order. Same values and gradients, two intermediate-wide
  // activations less for two of the MLP's three projections again (the selective recompute
  // of train.recompute_mlp_layers). Dropout masks are drawn as the two functions draw them.
  static at::Tensor forward_mlp(const LoraLinear& gate, const LoraLinear& up, const LoraLinear& down,
                                const at::Tensor& x, const at::Tensor& norm_weight, double eps);
  // While one exists on this thread, forwards without a graph still apply LoRA dropout
  // (drawing the same masks as with a graph): the no-grad forward of a checkpointed layer
  // must match its recomputation. Without one, no-grad forwards (evaluation) never drop.
  struct DropoutWithoutGraph {
    DropoutWithoutGraph();
    ~DropoutWithoutGraph();
    DropoutWithoutGraph(const DropoutWithoutGraph&) = delete;
    DropoutWithoutGraph& operator=(const DropoutWithoutGraph&) = delete;
    bool previous;
  };
};

// Whether LoraLinear::forward_normed and forward_mlp stack the adapters of projections that
// share their input: yes unless R1DIST_LORA_GROUP=0 in the environment (one product per
// projection then, for benchmarks; docs/PERFORMANCE.md compares the two).
bool lora_grouping();

}  // namespace r1dist
