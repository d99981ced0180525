// Models the torch tests share.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "support/temp.h"

namespace r1dist::test {

// The qwen2_a fixture (GQA: 4 query heads, 2 kv heads) with LoRA r=8 on all seven
// projections of its layers and every adapter value drawn at random (seed 5, scale 0.05):
// B != 0, so the model has drifted from its base and A's gradient is not zero.
inline Qwen2Model tiny_with_adapters(const at::Device& dev, at::ScalarType dt) {
  auto model = Qwen2Model::load(fixture("qwen2_a"), dt, dev);
  model.attach_lora(LoraSpec{8, 16, 0.0, false}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}, 3);
  at::NoGradGuard ng;
  at::manual_seed(5);
  auto flat = model.lora().flat();
  flat.copy_(at::randn(flat.sizes(), flat.options().dtype(at::kFloat)).mul_(0.05));
  return model;
}

// The tiny preset with a vocabulary of 300 and `layers` decoder layers (weights N(0, 0.05),
// seed 7) on `dev` in `dt`, its projections NF4 when quant is "nf4", LoRA r=8 with `dropout`
// on all seven, every adapter value N(0, 0.02): B != 0, so every gradient is non-trivial.
inline Qwen2Model small_lora_model(double dropout, const std::string& quant, int64_t layers = 2,
                                   const at::Device& dev = at::Device(at::kCPU), at::ScalarType dt = at::kFloat) {
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 300;
  cfg.num_hidden_layers = layers;
  Qwen2Model m(cfg, dt, dev);
  at::manual_seed(7);
  for (auto& [name, t] : m.named_weights()) t->normal_(0, 0.05);
  if (quant == "nf4")
    for (auto& a : m.projections(projection_names())) a.layer->quantize(true, a.module_path);
  m.attach_lora(LoraSpec{8, 16, dropout, false}, projection_names(), 3407);
  at::NoGradGuard ng;
  m.lora().flat().normal_(0, 0.02);
  return m;
}

// The adapters' gradients (a copy of the flat buffer) of the causal LM loss of ids under
// `plan`, LoRA dropout masks drawn from seed 11 (the same for every plan).
inline at::Tensor adapter_grads(Qwen2Model& m, const at::Tensor& ids, const RecomputePlan& plan,
                                const PackedRows* packed = nullptr) {
  m.lora().flat_grad().zero_();
  at::manual_seed(11);
  causal_lm_loss(m.lm_head(m.hidden_states_train(ids, plan, packed)), ids).backward();
  return m.lora().flat_grad().clone();
}

}  // namespace r1dist::test
