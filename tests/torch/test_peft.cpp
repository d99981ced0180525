// LoRA against HF PEFT (tools/reference/make_peft_fixture.py): the same adapters on the same
// base give the same logits, loss and gradient of every lora_A / lora_B; the PEFT files
// round-trip through r1dist's writer.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "r1dist/peft/peft_format.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

// fp32 on the CPU, dense base (quant.mode = none) as in the PEFT run. Tolerances: logits and
// loss 1e-5 relative; gradients 1e-4 relative (max|diff| / max|ref| per tensor: sums over
// 46 tokens in a different order).
TEST(PeftParity, LogitsLossAndEveryAdapterGradientMatch) {
  const auto dir = test::fixture("peft_a");
  auto f = st::File::open(dir + "/reference.safetensors");
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto pc = read_peft_config(dir);
  EXPECT_EQ(pc.spec.r, 8);
  EXPECT_DOUBLE_EQ(pc.spec.alpha, 16);
  EXPECT_EQ(pc.targets.size(), 7u);
  model.attach_lora(pc.spec, pc.targets, 0);
  load_peft_adapter(model.lora(), dir);

  auto ids = test::reference_tensor(f, "input_ids");
  auto logits = model.forward(ids);
  test::max_rel_err(logits, test::reference_tensor(f, "logits"), 1e-5, "logits");
  auto loss = causal_lm_loss(logits, test::reference_tensor(f, "labels"));
  EXPECT_NEAR(loss.item<double>(), test::reference_tensor(f, "loss").item<double>(), 1e-5);
  loss.backward();
  int checked = 0;
  double worst = 0;
  for (auto& [name, p] : model.lora().named_parameters()) {
    worst = std::max(worst, test::max_rel_err(p.grad(), test::reference_tensor(f, "grad." + name), 1e-4, name));
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 7 * 2);
  std::printf("PEFT parity: %d adapter gradients, worst max rel err %.3g\n", checked, worst);
}

TEST(PeftParity, SavedAdapterReadsBackIdentically) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto pc = read_peft_config(test::fixture("peft_a"));
  model.attach_lora(pc.spec, pc.targets, 0);
  load_peft_adapter(model.lora(), test::fixture("peft_a"));
  test::TempDir tmp;
  save_peft_adapter(model.lora(), tmp / "out", pc);
  auto again = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto pc2 = read_peft_config(tmp / "out");
  EXPECT_EQ(pc2.spec.r, pc.spec.r);
  EXPECT_EQ(pc2.targets, pc.targets);
  again.attach_lora(pc2.spec, pc2.targets, 99);
  load_peft_adapter(again.lora(), tmp / "out");
  EXPECT_TRUE(again.lora().flat().equal(model.lora().flat()));
  auto f = st::File::open(tmp / "out/adapter_model.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(PeftParity, MismatchedRankIsRefusedByName) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  model.attach_lora(LoraSpec{4, 16, 0, false}, projection_names(), 0);
  try {
    load_peft_adapter(model.lora(), test::fixture("peft_a"));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("lora_A.weight' has another shape"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace r1dist
