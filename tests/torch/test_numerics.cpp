// The numerics guard of the speed work: on a tiny model, one training step's loss
// and adapter gradients in bf16 on a GPU (NF4 base, CUDA dequant kernel, flash attention,
// chunked loss, the LoRA sum accumulated by addmm, layer checkpointing) against the same step
// in fp32 on the CPU (plain paths), with the tolerance bf16 allows. The fused paths have their
// own equalities on the CPU: LmLoss.* (chunked = full logits), Lora.GradientsMatchAutograd...
// (the accumulated LoRA sum = the dense formula), Packing.* (packed = padded), and
// Qwen2Parity.* (the RMSNorm as transformers').
#include <gtest/gtest.h>

#include <cstdio>

#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

struct Step {
  double loss;
  at::Tensor grad;  // flat adapter gradient, fp32 on the CPU
};

// Loads qwen2_a in `dt` on `dev` with an NF4 base and adapters on all seven projections
// (the same seeded values everywhere), runs one micro-batch forward and backward.
Step one_step(const at::Device& dev, at::ScalarType dt, const at::Tensor& ids, const at::Tensor& labels) {
  LoadOptions lo;
  lo.quant = QuantMode::nf4;
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), dt, dev, lo);
  model.attach_lora(LoraSpec{8, 16, 0.0, false}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}, 3);
  {
    at::NoGradGuard ng;
    auto flat = model.lora().flat();
    const auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    flat.copy_(at::randn(flat.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).mul_(0.05));
  }
  const int64_t count = labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  const auto loss = chunked_lm_loss_sum(model.hidden_states_train(ids.to(dev), true), model.lm_head_weight(),
                                        labels.to(dev), 16) /
                    double(count);
  loss.backward();
  return {loss.item<double>(), model.lora().flat_grad().to(at::kFloat).cpu().clone()};
}

TEST(Numerics, AGpuBf16StepMatchesTheCpuFp32Step) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const auto ids = at::randint(0, 300, {2, 48}, gen, at::TensorOptions().dtype(at::kLong));
  auto labels = ids.clone();
  labels.select(0, 0).slice(0, 0, 10).fill_(-100);  // a masked prompt
  const auto cpu = one_step(at::Device(at::kCPU), at::kFloat, ids, labels);
  const auto gpu = one_step(at::Device(at::kCUDA, 0), at::kBFloat16, ids, labels);
  const double el = std::abs(gpu.loss - cpu.loss) / std::abs(cpu.loss), eg = test::rel_err(gpu.grad, cpu.grad);
  // Cosine similarity: the direction of the step, which is what AdamW mostly follows.
  const double cos = (gpu.grad.to(at::kDouble) * cpu.grad.to(at::kDouble)).sum().item<double>() /
                     (gpu.grad.to(at::kDouble).norm().item<double>() * cpu.grad.to(at::kDouble).norm().item<double>());
  std::printf("GPU bf16 vs CPU fp32 step: loss %.6f vs %.6f (rel err %.3g), adapter grad max rel err %.3g, "
              "cosine %.6f\n", gpu.loss, cpu.loss, el, eg, cos);
  EXPECT_LE(el, 1e-2);
  EXPECT_LE(eg, 1e-1);
  EXPECT_GE(cos, 0.995);
}

}  // namespace
}  // namespace r1dist
