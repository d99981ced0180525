// Models the torch tests share.
#pragma once
#include <ATen/ATen.h>

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

}  // namespace r1dist::test
