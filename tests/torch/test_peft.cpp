// LoRA against HF PEFT (tools/reference/make_peft_fixture.py): the same adapters on the same
// base give the same logits, loss and gradient of every lora_A / lora_B; the PEFT files
// round-trip through r1dist's writer.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "r1dist/peft/peft_format.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

// The PEFT adapter of fixture `name` on qwen2_a against PEFT's own logits, loss and the
// gradient of every lora_A / lora_B (its reference.safetensors). fp32 on the CPU, dense base
// (quant.mode = none) as in the PEFT run. Tolerances: logits and loss 1e-5 relative;
// gradients 1e-4 relative (max|diff| / max|ref| per tensor: sums over 46 tokens in a
// different order). Returns how many gradients were compared.
int expect_peft_parity(const std::string& name) {
  const auto dir = test::fixture(name);
  auto f = st::File::open(dir + "/reference.safetensors");
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto pc = read_peft_config(dir);
  model.attach_lora(pc.spec_for(), pc.targets, 0);
  load_peft_adapter(model.lora(), dir);
  auto logits = model.forward(test::reference_tensor(f, "input_ids"));
  test::max_rel_err(logits, test::reference_tensor(f, "logits"), 1e-5, name + " logits");
  auto loss = causal_lm_loss(logits, test::reference_tensor(f, "labels"));
  EXPECT_NEAR(loss.item<double>(), test::reference_tensor(f, "loss").item<double>(), 1e-5) << name;
  loss.backward();
  int checked = 0;
  double worst = 0;
  for (auto& [grad_name, p] : model.lora().named_parameters()) {
    worst = std::max(worst, test::max_rel_err(p.grad(), test::reference_tensor(f, "grad." + grad_name), 1e-4, grad_name));
    ++checked;
  }
  std::printf("PEFT parity (%s): %d adapter gradients, worst max rel err %.3g\n", name.c_str(), checked, worst);
  return checked;
}

TEST(PeftParity, LogitsLossAndEveryAdapterGradientMatch) {
  const auto pc = read_peft_config(test::fixture("peft_a"));
  EXPECT_EQ(pc.spec.r, 8);
  EXPECT_DOUBLE_EQ(pc.spec.alpha, 16);
  EXPECT_EQ(pc.targets.size(), 7u);
  EXPECT_EQ(expect_peft_parity("peft_a"), 2 * 7 * 2);
}

// PEFT's own rank_pattern / alpha_pattern (tools/reference/make_peft_fixture.py --patterns):
// rank_pattern {layer 1's k_proj: 4}, alpha_pattern {q_proj: 32, layers.0.self_attn.q_proj: 64},
// which PEFT saves sorted, so layer 0's q_proj takes 64 and the others 32 (the first key of the
// file that matches wins). Same logits, loss and gradients as PEFT computes from these files.
TEST(PeftParity, RankAndAlphaPatternsMatchPeft) {
  const auto pc = read_peft_config(test::fixture("peft_b"));
  ASSERT_EQ(pc.rank_pattern.size(), 1u);
  ASSERT_EQ(pc.alpha_pattern.size(), 2u);
  EXPECT_EQ(expect_peft_parity("peft_b"), 2 * 7 * 2);
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

// Settings that change what an adapter computes and that r1dist does not implement are
// refused by name (they were accepted without a word and gave the plain adapter's loss).
TEST(PeftFormat, UnimplementedFieldsAreRefusedByName) {
  test::TempDir tmp;
  const auto dir = test::copy_fixture(tmp, "peft_a");
  test::edit_json(dir + "/adapter_config.json", [](nlohmann::json& j) {
    j["use_dora"] = true;
    j["layers_to_transform"] = {0};
    j["lora_bias"] = true;
    j["modules_to_save"] = {"lm_head"};
    j["exclude_modules"] = nullptr;  // PEFT's "off" values stay accepted
    j["megatron_config"] = nullptr;
    j["rank_pattern"] = nlohmann::json::object();
  });
  EXPECT_TRUE(test::ThrowsWith([&] { read_peft_config(dir); },
                               {"\"use_dora\" = true: DoRA", "\"layers_to_transform\" = [0]", "\"lora_bias\" = true",
                                "\"modules_to_save\" = [\"lm_head\"]", "not implemented by r1dist"}));
}

// rank_pattern and alpha_pattern give the modules they match (PEFT's rule: the key matches
// the end of the module path at a dot, the first key in the file that matches wins) their
// own r and alpha: here q_proj of every layer takes alpha 32 and layer 1's k_proj r 4.
TEST(PeftFormat, RankAndAlphaPatternsGiveTheirModulesTheirOwnRAndAlpha) {
  test::TempDir tmp;
  const auto dir = test::copy_fixture(tmp, "peft_a");
  auto base = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  auto pc = read_peft_config(dir);
  EXPECT_TRUE(pc.rank_pattern.empty() && pc.alpha_pattern.empty());
  // An adapter whose layer-1 k_proj has rank 4, saved by r1dist's writer with the patterns.
  pc.rank_pattern = {{"model.layers.1.self_attn.k_proj", 4}};
  pc.alpha_pattern = {{"q_proj", 32.0}, {"layers.0.self_attn.q_proj", 64.0}};
  EXPECT_EQ(pc.spec_for("model.layers.1.self_attn.k_proj").r, 4);
  EXPECT_EQ(pc.spec_for("model.layers.11.self_attn.k_proj").r, 8) << "layers.1 is not a suffix of layers.11";
  EXPECT_DOUBLE_EQ(pc.spec_for("model.layers.0.self_attn.q_proj").alpha, 32.0) << "the first key that matches wins";
  EXPECT_DOUBLE_EQ(pc.spec_for("model.layers.0.self_attn.v_proj").alpha, 16.0);
  base.attach_lora(pc.spec_for(), pc.targets, 5);
  {
    at::NoGradGuard ng;
    base.lora().flat().normal_(0, 0.05);
  }
  save_peft_adapter(base.lora(), tmp / "patterned", pc);
  const auto back = read_peft_config(tmp / "patterned");
  ASSERT_EQ(back.rank_pattern.size(), 1u);
  ASSERT_EQ(back.alpha_pattern.size(), 2u);
  EXPECT_EQ(back.alpha_pattern[0].first, "q_proj") << "the file's order is kept";
  auto again = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  again.attach_lora(back.spec_for(), back.targets, 0);
  load_peft_adapter(again.lora(), tmp / "patterned");
  EXPECT_TRUE(again.lora().flat().equal(base.lora().flat()));
  for (const auto& ref : again.lora().refs()) {
    const auto spec = back.spec_for(ref.module_path);
    EXPECT_EQ(ref.layer->lora_A.size(0), spec.r) << ref.module_path;
    EXPECT_DOUBLE_EQ(ref.layer->scaling, spec.alpha / double(spec.r)) << ref.module_path;
  }
  // What alpha_pattern means in numbers: the patterned model equals one without the alpha
  // pattern whose q_proj adapters have B doubled (alpha 32 instead of 16, the same r).
  auto plain_pc = back;
  plain_pc.alpha_pattern.clear();
  auto plain = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  plain.attach_lora(plain_pc.spec_for(), plain_pc.targets, 0);
  at::NoGradGuard ng;
  plain.lora().flat().copy_(again.lora().flat());
  const auto ids = at::arange(3, 15, at::kLong).reshape({1, 12});
  EXPECT_FALSE(at::allclose(plain.forward(ids), again.forward(ids)));
  for (const auto& ref : plain.lora().refs())
    if (ref.module_path.size() > 6 && ref.module_path.compare(ref.module_path.size() - 6, 6, "q_proj") == 0)
      ref.layer->lora_B.mul_(2.0);
  test::max_rel_err(plain.forward(ids), again.forward(ids), 1e-5, "alpha_pattern q_proj = 2 x alpha");
}

}  // namespace
}  // namespace r1dist
