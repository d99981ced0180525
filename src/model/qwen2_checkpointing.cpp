// Per-layer activation checkpointing for Qwen2Model::hidden_states_train.
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <optional>

#include "r1dist/base/error.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/offload.h"

namespace r1dist {

at::Tensor Qwen2Model::layer_forward(int i, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                     const PackedRows* packed, KVCache* cache, const at::Tensor& allowed) const {
  const auto& l = layers_.at(static_cast<size_t>(i));
  auto x = h + attention(l, h, cos, sin, cache, i, allowed, packed);
  return x + mlp(l, x);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The forward runs the layer without a graph and keeps only its input; the backward
// recomputes the layer with a graph and back-propagates through it (a re-entrant backward,
// like torch.utils.checkpoint's reentrant variant). LoRA gradients accumulate into their
// .grad (views of the flat gradient buffer) inside that inner backward. `anchor` is an
// empty tensor that requires grad, so the node exists even when h does not (the first
// layer's input comes from the frozen embedding). With LoRA dropout the generator state
// is saved and restored so the recomputation draws the same masks. `packed` (may be null)
// is held by pointer, like the model: the caller keeps both alive through the backward.
// With `offload` (a layer of RecomputePlan::offload_inputs) the input waits in host memory
// instead (its group begun by the caller), the store held by pointer like the model.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& anchor,
                            const at::Tensor& cos, const at::Tensor& sin, const Qwen2Model* model,
                            int64_t layer, bool save_rng, const PackedRows* packed, ActivationOffload* offload) {
    (void)anchor;
    if (offload) {
      ctx->saved_data["offload"] = reinterpret_cast<int64_t>(offload);
      ctx->saved_data["input"] = offload->put(h);
      ctx->save_for_backward({at::Tensor(), cos, sin});
    } else {
      ctx->save_for_backward({h, cos, sin});
    }
    ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
    ctx->saved_data["packed"] = reinterpret_cast<int64_t>(packed);
    ctx->saved_data["layer"] = layer;
    ctx->saved_data["rng"] = save_rng;
    if (save_rng) {
      auto gen = at::globalContext().defaultGenerator(h.device());
      std::lock_guard<std::mutex> lock(gen.mutex());
      ctx->saved_data["rng_state"] = gen.get_state();
    }
    LoraLinear::DropoutWithoutGraph drop;
    return model->layer_forward(static_cast<int>(layer), h, cos, sin, packed);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* model = reinterpret_cast<const Qwen2Model*>(ctx->saved_data["model"].toInt());
    const int layer = static_cast<int>(ctx->saved_data["layer"].toInt());
    const bool rng = ctx->saved_data["rng"].toBool();
    const auto* packed = reinterpret_cast<const PackedRows*>(ctx->saved_data["packed"].toInt());
    auto saved = ctx->get_saved_variables();
    const auto in = ctx->saved_data.find("input");
    auto h = (in == ctx->saved_data.end()
                  ? saved[0]
                  : reinterpret_cast<ActivationOffload*>(ctx->saved_data["offload"].toInt())->take(in->second.toInt()))
                 .detach()
                 .requires_grad_(true);
    at::Tensor now_state;
    if (rng) {
      auto gen = at::globalContext().defaultGenerator(h.device());
      std::lock_guard<std::mutex> lock(gen.mutex());
      now_state = gen.get_state();
      gen.set_state(ctx->saved_data["rng_state"].toTensor());
    }
    at::Tensor out;
    {
      at::AutoGradMode on(true);
      out = model->layer_forward(layer, h, saved[1], saved[2], packed);
    }
    if (rng) {
      auto gen = at::globalContext().defaultGenerator(h.device());
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now_state);
    }
    torch::autograd::backward({out}, {grads[0]});
    return {h.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor Qwen2Model::hidden_states_train(const at::Tensor& ids, const RecomputePlan& plan,
                                           const PackedRows* packed) const {
  const int64_t layers = cfg_.num_hidden_layers;
  const int64_t recomputed = at::GradMode::is_enabled() ? std::clamp<int64_t>(plan.layers, 0, layers) : 0;
  const int64_t mlp_end =
      at::GradMode::is_enabled() ? recomputed + std::clamp<int64_t>(plan.mlp, 0, layers - recomputed) : 0;
  const bool offload = at::GradMode::is_enabled() && (plan.offload > 0 || (plan.offload_inputs && recomputed > 0));
  if (mlp_end == 0 && !packed && !offload) return hidden_states(ids, nullptr);
  check(ids.dim() == 2, "Qwen2Model: ids must be (batch, seq)");
  at::Tensor cos, sin;
  if (packed) {
    check(ids.size(0) == 1 && packed->positions.dim() == 2 && packed->positions.size(1) == ids.size(1),
          "Qwen2Model: packed rows must be (1, T) ids with T positions");
    std::tie(cos, sin) = rope_tables(cfg_.head_dim, cfg_.rope_theta, packed->positions, dtype_);
    cos = cos.unsqueeze(1);  // (1, 1, T, D)
    sin = sin.unsqueeze(1);
  } else {
    std::tie(cos, sin) = rope_tables(cfg_.head_dim, cfg_.rope_theta, 0, ids.size(1), dtype_, device_);
  }
  auto h = at::embedding(embed_, ids.to(device_, at::kLong));
  bool dropout = false;
  for (const auto& l : layers_)
    for (const auto* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down})
      dropout = dropout || (p->has_adapter() && p->adapter_enabled && p->dropout > 0);
  const auto anchor = at::empty({0}, at::TensorOptions().dtype(at::kFloat).device(device_)).requires_grad_(true);
  if (offload) {
    if (!offload_) offload_ = std::make_shared<ActivationOffload>(device_);
    offload_->reset();
  }
  auto out = through_layers(h, [&](int i, const at::Tensor& x) {
    if (i < recomputed) {
      // The layer's own functions keep nothing (no graph); the input is all it keeps.
      const bool input_out = offload && plan.input_offloaded(i);
      if (input_out) offload_->begin_group();
      return CheckpointedLayer::apply(x, anchor, cos, sin, this, int64_t(i), dropout, packed,
                                      input_out ? offload_.get() : nullptr);
    }
    std::optional<ActivationOffload::Scope> scope;
    if (offload && plan.offloaded(i, layers)) {
      offload_->begin_group();
      scope.emplace(*offload_, plan.offload_attention);
    }
    if (i >= mlp_end) return layer_forward(i, x, cos, sin, packed);
    const auto& l = layers_[size_t(i)];
    auto y = x + attention(l, x, cos, sin, nullptr, i, {}, packed);
    return y + mlp(l, y, /*recompute=*/true);
  });
  if (offload) offload_->forward_done();
  return out;
}

int64_t Qwen2Model::offloaded_bytes() const { return offload_ ? offload_->bytes() : 0; }

}  // namespace r1dist
