// The trainer's pieces: AdamW, schedules, clipping, layer checkpointing and KL drift.
// Whole runs under `mpirun -np 2` are in tests/e2e/test_trainer.cpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "r1dist/eval/drift.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/train/optim.h"
#include "support/models.h"
#include "support/tensors.h"

using namespace r1dist;
using namespace r1dist::test;

TEST(Optim, AdamWMatchesTheFormulaInDoublePrecision) {
  auto p = at::randn({37}, at::kFloat);
  const auto p0 = p.to(at::kDouble).clone();
  AdamWConfig c{0.9, 0.95, 1e-6, 0.1};
  AdamW opt(p, c);
  std::vector<double> w(p0.data_ptr<double>(), p0.data_ptr<double>() + 37), m(37, 0), v(37, 0);
  const double lrs[] = {1e-2, 5e-3, 2e-3, 1e-3};
  for (int t = 1; t <= 4; ++t) {
    auto g = at::randn({37}, at::kFloat);
    const double lr = lrs[t - 1];
    opt.step(p, g, lr);
    for (int i = 0; i < 37; ++i) {
      const double gi = g[i].item<float>();
      w[i] *= 1 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
      const double mh = m[i] / (1 - std::pow(c.beta1, t)), vh = v[i] / (1 - std::pow(c.beta2, t));
      w[i] -= lr * mh / (std::sqrt(vh) + c.eps);
    }
  }
  EXPECT_EQ(opt.steps(), 4);
  auto want = at::tensor(w, at::kDouble);
  max_rel_err(p, want, 1e-6, "AdamW after 4 steps");
}

TEST(Optim, ScheduleFollowsTransformersWarmupAndDecay) {
  // transformers.get_linear_schedule_with_warmup(5, 60): step/5 during warmup, then
  // (60 - step) / 55; the first optimizer step (step 0) uses lr 0.
  EXPECT_EQ(lr_at(Schedule::linear, 2e-4, 0, 5, 60), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::linear, 2e-4, 4, 5, 60), 2e-4 * 4 / 5);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::linear, 2e-4, 5, 5, 60), 2e-4);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::linear, 2e-4, 32, 5, 60), 2e-4 * 28 / 55);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::linear, 2e-4, 59, 5, 60), 2e-4 / 55);
  // get_cosine_schedule_with_warmup: 0.5 (1 + cos(pi progress)), progress over 55 steps:
  // about half at the midpoint; at step 27 (progress 0.4), 0.5 (1 + cos(0.4 pi)).
  EXPECT_NEAR(lr_at(Schedule::cosine, 1.0, 32, 5, 60), 0.5, 0.03);
  EXPECT_NEAR(lr_at(Schedule::cosine, 1.0, 27, 5, 60), 0.6545084971874737, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::cosine, 1.0, 5, 5, 60), 1.0);
  EXPECT_NEAR(lr_at(Schedule::cosine, 1.0, 60, 5, 60), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::constant, 3e-6, 40, 5, 60), 3e-6);
  // An unknown schedule name never reaches here: the config refuses it (ConfigTest).
}

TEST(Optim, ClipGradNormScalesOnlyAboveTheLimit) {
  auto g = at::full({100}, 0.3f);  // norm 3
  EXPECT_NEAR(clip_grad_norm(g, 1.0).item<double>(), 3.0, 1e-6);
  EXPECT_NEAR(g.norm().item<double>(), 1.0, 1e-5);
  auto h = at::full({4}, 0.1f);
  EXPECT_NEAR(clip_grad_norm(h, 1.0).item<double>(), 0.2, 1e-6);
  EXPECT_TRUE(h.equal(at::full({4}, 0.1f)));
  auto z = at::full({4}, 0.1f);
  EXPECT_NEAR(clip_grad_norm(z, 0.0).item<double>(), 0.2, 1e-6) << "max_norm 0: no clipping";
  EXPECT_TRUE(z.equal(at::full({4}, 0.1f)));
  auto n = at::full({4}, NAN);
  EXPECT_TRUE(std::isnan(clip_grad_norm(n, 1.0).item<double>()));
}

namespace {

Qwen2Model small_model(double dropout, const std::string& quant) { return test::small_lora_model(dropout, quant); }

at::Tensor grads(Qwen2Model& m, const at::Tensor& ids, const RecomputePlan& plan) {
  return test::adapter_grads(m, ids, plan);
}

}  // namespace

TEST(LayerCheckpointing, RecomputedLayersGiveTheSameGradients) {
  for (const char* quant : {"none", "nf4"}) {
    auto m = small_model(0.0, quant);
    auto ids = at::randint(0, 300, {2, 13});
    const int64_t layers = m.config().num_hidden_layers;
    const auto plain = grads(m, ids, {}), ckpt = grads(m, ids, {layers, 0});
    EXPECT_GT(plain.abs().sum().item<double>(), 0);
    max_rel_err(ckpt, plain, 1e-6, std::string("checkpointed vs plain gradients, base ") + quant);
    // Kept layers at the end: the last layer alone, or none recomputed.
    for (const RecomputePlan p : {RecomputePlan{layers - 1, 0}, RecomputePlan{0, 0}})
      max_rel_err(grads(m, ids, p), plain, 1e-6,
                  p.describe(layers) + " vs plain gradients, base " + quant);
  }
}

// LoraLinear::forward_mlp (train.recompute_mlp_layers) on both layer forms, with and without
// dropout and NF4, beside recomputed and kept layers: the gradients of the fused layer it
// replaces, to fp32 rounding.
TEST(LayerCheckpointing, RecomputedMlpsGiveTheSameGradients) {
  for (const char* quant : {"none", "nf4"})
    for (double dropout : {0.0, 0.3})
      for (bool fused : {false, true}) {
        auto m = small_model(dropout, quant);
        m.set_fused(fused);
        auto ids = at::randint(0, 300, {2, 13});
        const int64_t layers = m.config().num_hidden_layers;
        ASSERT_GE(layers, 2);
        const auto plain = grads(m, ids, {});
        const std::string what = std::string(", base ") + quant + ", dropout " + std::to_string(dropout) +
                                 ", fused " + (fused ? "on" : "off");
        for (const RecomputePlan p : {RecomputePlan{0, layers}, RecomputePlan{1, layers - 1}, RecomputePlan{0, 1}})
          max_rel_err(grads(m, ids, p), plain, 1e-5, p.describe(layers) + what);
      }
}

TEST(LayerCheckpointing, DropoutMasksAreReplayedInTheRecomputation) {
  // Both layer forms: the fused one draws the q/k/v and gate/up masks inside
  // LoraLinear::forward_normed in the recomputation and in forward() in the first pass.
  for (bool fused : {false, true}) {
    auto m = small_model(0.3, "none");
    m.set_fused(fused);
    auto ids = at::randint(0, 300, {2, 11});
    const int64_t layers = m.config().num_hidden_layers;
    const auto plain = grads(m, ids, {}), ckpt = grads(m, ids, {layers, 0});
    max_rel_err(ckpt, plain, 1e-6, std::string("gradients with LoRA dropout 0.3, fused ") + (fused ? "on" : "off"));
  }
}

TEST(Drift, KlIsZeroForTheBaseAndPositiveOnceAdaptersChange) {
  auto m = small_model(0.0, "none");
  Example e;
  for (int i = 0; i < 40; ++i) e.ids.push_back((i * 37) % 300);
  e.labels.assign(e.ids.begin(), e.ids.end());
  {
    // B = 0: the adapted model is the base model.
    at::NoGradGuard ng;
    for (auto& [name, t] : m.lora().named_parameters())
      if (name.find("lora_B") != std::string::npos) t.zero_();
  }
  const auto d0 = kl_drift(m, {&e}, /*capacity=*/64, /*chunk=*/16);
  const auto& kl0 = d0.kl;
  EXPECT_EQ(kl0.count, 39);
  EXPECT_NEAR(kl0.mean(), 0.0, 1e-7);
  EXPECT_EQ(d0.agree, 39) << "an untouched adapter agrees with its base at every position";
  {
    at::NoGradGuard ng;
    m.lora().flat().normal_(0, 0.05);
  }
  const auto d1 = kl_drift(m, {&e}, 64, 16);
  const auto& kl1 = d1.kl;
  const auto kl1_one_chunk = kl_drift(m, {&e}, 64, 1000).kl;
  EXPECT_LE(d1.agree, 39);
  EXPECT_GT(kl1.mean(), 1e-6);
  // Chunking changes only the GEMM blocking: fp32 log-probs differ in the last bits, and KL
  // is a difference of log-probs, so allow 1e-7 per position on top of 0.1%.
  EXPECT_NEAR(kl1.sum, kl1_one_chunk.sum, 1e-3 * std::abs(kl1.sum) + 1e-7 * double(kl1.count));
  // The adapters are on again afterwards.
  for (auto& a : m.lora().refs()) EXPECT_TRUE(a.layer->adapter_enabled);
}

