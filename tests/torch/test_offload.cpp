// ActivationOffload (train.offload_layers): the layers that keep activations in host memory
// give bitwise the gradients of the same plan without offload, on the CPU (the same
// bookkeeping, host copies) and on the GPU (copy streams, prefetch, the CPU's wait for the
// copies in flight), beside recomputed and MLP-recomputing layers, with LoRA dropout.
#include <ATen/ATen.h>
#include <cmath>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "r1dist/base/error.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/tensor/offload.h"
#include "r1dist/train/build_run.h"
#include "support/models.h"

namespace r1dist {
namespace {

// The tiny preset with six layers (more than ActivationOffload::kInFlight), fused path.
Qwen2Model six_layers(at::Device dev, at::ScalarType dt, double dropout) {
  auto m = test::small_lora_model(dropout, "none", 6, dev, dt);
  m.set_fused(true);
  return m;
}

at::Tensor grads(Qwen2Model& m, const at::Tensor& ids, const RecomputePlan& plan, const PackedRows* packed = nullptr) {
  return test::adapter_grads(m, ids, plan, packed);
}

void expect_offload_changes_nothing(at::Device dev, at::ScalarType dt) {
  for (double dropout : {0.0, 0.3}) {
    auto m = six_layers(dev, dt, dropout);
    const auto ids = at::randint(0, 300, {2, 13}).to(dev);
    const int64_t L = m.config().num_hidden_layers;
    for (const RecomputePlan base :
         {RecomputePlan{0, 0}, RecomputePlan{1, 2}, RecomputePlan{0, L}, RecomputePlan{L, 0}, RecomputePlan{3, 0}}) {
      const auto without = grads(m, ids, base);
      ASSERT_GT(without.abs().sum().item<double>(), 0);
      for (const bool inputs : {false, true})
        for (const bool attention : {false, true})
          for (const int64_t offload : {int64_t(0), int64_t(1), int64_t(3), L}) {
            RecomputePlan p = base;
            p.offload = offload;
            p.offload_inputs = inputs;
            p.offload_attention = attention;
            const bool moves = (offload > 0 && base.layers < L) || (inputs && base.layers > 0);
            if (!moves || (attention && offload == 0)) continue;
            const auto with = grads(m, ids, p);
            EXPECT_GT(m.offloaded_bytes(), 0) << p.describe(L);
            EXPECT_TRUE(with.equal(without)) << p.describe(L) << " on " << dev << ", dropout " << dropout
                                             << ": max diff " << (with - without).abs().max().item<double>();
          }
    }
  }
}

// The layers recomputed whole move their input and nothing else: one hidden-wide value per
// token and layer.
TEST(Offload, RecomputedLayersMoveOnlyTheirInput) {
  auto m = six_layers(at::Device(at::kCPU), at::kFloat, 0.0);
  const auto ids = at::randint(0, 300, {2, 13});
  const int64_t L = m.config().num_hidden_layers, hidden = m.config().hidden_size;
  RecomputePlan p{4, 0};
  p.offload_inputs = true;
  grads(m, ids, p);
  EXPECT_EQ(m.offloaded_bytes(), 4 * 2 * 13 * hidden * 4);
  p.offload = 1;  // and one of the two kept layers its input, residual sum, gate and up
  grads(m, ids, p);
  EXPECT_EQ(m.offloaded_bytes(), 4 * 2 * 13 * hidden * 4 +
                                     2 * 13 * (2 * hidden + 2 * m.config().intermediate_size) * 4);
  EXPECT_EQ(p.describe(L),
            "4 recompute the whole layer (their inputs in host memory), 0 only the MLP, 2 keep every activation; "
            "1 of the layers not recomputed keep activations in host memory");
  // With the attention's: q, k, v and the attention's output besides (GQA: k and v kv-wide).
  p.offload_attention = true;
  grads(m, ids, p);
  const int64_t kv = m.config().num_key_value_heads * m.config().head_dim;
  EXPECT_EQ(m.offloaded_bytes(), 4 * 2 * 13 * hidden * 4 +
                                     2 * 13 * (4 * hidden + 2 * kv + 2 * m.config().intermediate_size) * 4);
  EXPECT_THAT(p.describe(L), ::testing::EndsWith("keep activations in host memory, the attention's too"));
}

TEST(Offload, LayersInHostMemoryGiveTheSameGradientsOnTheCpu) {
  expect_offload_changes_nothing(at::Device(at::kCPU), at::kFloat);
}

// Packed rows (attention within each row) take the same path.
TEST(Offload, PackedRowsGiveTheSameGradientsWithLayersInHostMemory) {
  auto m = six_layers(at::Device(at::kCPU), at::kFloat, 0.0);
  const auto packed = packed_rows({5, 9, 3}, at::Device(at::kCPU), at::kFloat);
  const auto ids = at::randint(0, 300, {1, 17});
  const auto without = grads(m, ids, RecomputePlan{1, 2}, &packed);
  EXPECT_TRUE(grads(m, ids, RecomputePlan{1, 2, 5}, &packed).equal(without));
  EXPECT_GT(m.offloaded_bytes(), 0);
  EXPECT_TRUE(grads(m, ids, RecomputePlan{1, 2, 5, true}, &packed).equal(without));
  EXPECT_TRUE(grads(m, ids, RecomputePlan{1, 2, 5, true, true}, &packed).equal(without));
}

TEST(Offload, LayersInHostMemoryGiveTheSameGradientsOnTheGpu) {
  if (!at::hasCUDA() || !fused::kernels_available(at::Device(at::kCUDA, 0)))
    GTEST_SKIP() << "no CUDA kernels in this build/machine";
  expect_offload_changes_nothing(at::Device(at::kCUDA, 0), at::kBFloat16);
  expect_offload_changes_nothing(at::Device(at::kCUDA, 0), at::kFloat);
}

// The store alone: values come back as they went, each key once, a later forward reuses it.
// train.offload = "auto" prices a plan with the model's own layer: its forward timed at the
// step's shape gives the compute rate (the other figures pass through), and the random streams
// are where they were (LoRA dropout draws in that forward), so a run that times it draws the
// dropout masks of one that does not.
TEST(Offload, TheLayerRateIsTimedWithoutMovingTheRandomStreams) {
  auto m = six_layers(at::Device(at::kCPU), at::kFloat, 0.3);
  Config cfg;
  cfg.train.micro_batch = 2;
  cfg.data.max_seq_len = 24;
  at::manual_seed(3);
  const auto expected = at::rand({8});
  at::manual_seed(3);
  const OffloadRates timed = with_layer_forward_rate(m, cfg, OffloadRates{2e9, 1.0, 5e9});
  EXPECT_TRUE(at::rand({8}).equal(expected));
  EXPECT_EQ(timed.link_bytes_per_s, 2e9);
  EXPECT_EQ(timed.host_bytes, 5e9);
  ASSERT_TRUE(timed.known());
  // The layer's forward in seconds: positive and finite (its value is the machine's).
  const double seconds = layer_forward_flops(m.config(), cfg) / timed.flops_per_s;
  EXPECT_GT(seconds, 0.0);
  EXPECT_TRUE(std::isfinite(seconds));
}

TEST(Offload, TheStoreGivesEachTensorBackOnce) {
  ActivationOffload store(at::Device(at::kCPU));
  EXPECT_THROW(store.put(at::ones({2})), Error);  // no group begun
  for (int pass = 0; pass < 2; ++pass) {
    store.reset();
    std::vector<at::Tensor> values;
    std::vector<int64_t> keys;
    for (int g = 0; g < 4; ++g) {
      store.begin_group();
      for (int k = 0; k < 2; ++k) {
        values.push_back(at::randn({3, 5 + pass}).t());  // not contiguous
        keys.push_back(store.put(values.back()));
      }
    }
    store.forward_done();
    EXPECT_EQ(store.bytes(), int64_t(8 * 15 + 8 * 3 * pass) * 4);
    for (size_t i = keys.size(); i-- > 0;) EXPECT_TRUE(store.take(keys[i]).equal(values[i]));
    EXPECT_THROW(store.take(keys[0]), Error);
  }
}

}  // namespace
}  // namespace r1dist
