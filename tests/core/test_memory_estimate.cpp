// The memory estimate (config/memory_estimate.h): the v6 shape's figure that
// docs/RELIABILITY.md compares with the measured peak, and how train.checkpointing and
// train.keep_layers move the activations.
#include <gtest/gtest.h>

#include <cstdio>

#include "r1dist/base/error.h"
#include "r1dist/config/memory_estimate.h"

namespace r1dist::test {
namespace {

Config v6_rank() {
  Config c;  // NF4, bf16, LoRA r=16 on all seven projections, checkpointing auto (unresolved: as layer)
  c.train.micro_batch = 2;
  c.data.max_seq_len = 8192;
  return c;
}

TEST(MemoryEstimate, TheV6RankOfThe14BPreset) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  const auto est = estimate_training_memory(m, v6_rank());
  EXPECT_NEAR(est.total() / 1e9, 23.1, 0.1) << est.describe();
  // Measured on one H200 (`r1dist bench train --preset r1-distill-qwen-14b --seq 8192
  // --micro-batch 2 --checkpointing layer`, 2026-12-01): 23.0 GB peak with the fused layer,
  // 23.4 GB with the plain ATen one (R1DIST_FUSED=0); each estimate stays above its peak.
  EXPECT_GE(est.total() / 1e9, 23.0);
  const auto plain = estimate_training_memory(m, v6_rank(), LayerPath::plain);
  EXPECT_NEAR(plain.total() / 1e9, 24.4, 0.1) << plain.describe();
  EXPECT_GE(plain.total() / 1e9, 23.4);
  // Without recomputation the plain path keeps far more per layer.
  auto none = v6_rank();
  none.train.checkpointing = Checkpointing::none;
  EXPECT_GT(estimate_training_memory(m, none, LayerPath::plain).activations,
            1.3 * estimate_training_memory(m, none, LayerPath::fused).activations);
}

// Peaks measured on one H200 by `r1dist bench train` (seq 8192, micro-batch 1, NF4, bf16,
// fused kernels; tools/gpu/bench_train.sh, docs/PERFORMANCE.md, 2026-12-01, after grouped-query
// attention, the rebuilt norm outputs and the 1,024-token loss chunk): the estimate
// is at or above each, and not more than 12% above.
TEST(MemoryEstimate, TracksThePeaksMeasuredOnAnH200) {
  struct Measured {
    const char* preset;
    Checkpointing ckpt;
    double peak_gb;
  };
  for (const auto& m : {Measured{"r1-distill-qwen-1.5b", Checkpointing::layer, 4.1},
                        Measured{"r1-distill-qwen-1.5b", Checkpointing::none, 14.7},
                        Measured{"r1-distill-qwen-7b", Checkpointing::layer, 10.2},
                        Measured{"r1-distill-qwen-7b", Checkpointing::none, 32.3},
                        Measured{"r1-distill-qwen-14b", Checkpointing::layer, 17.1},
                        Measured{"r1-distill-qwen-14b", Checkpointing::none, 52.4}}) {
    Config c;
    c.train.micro_batch = 1;
    c.data.max_seq_len = 8192;
    c.train.checkpointing = m.ckpt;
    const double gb = estimate_training_memory(qwen2_preset(m.preset), c).total() / 1e9;
    std::printf("%s checkpointing %s: estimate %.1f GB, measured %.1f GB\n", m.preset,
                m.ckpt == Checkpointing::layer ? "layer" : "none", gb, m.peak_gb);
    EXPECT_GE(gb, m.peak_gb) << m.preset;
    EXPECT_LE(gb, 1.12 * m.peak_gb) << m.preset;
  }
}

TEST(MemoryEstimate, KeptLayersMoveTheEstimateFromCheckpointedToPlain) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = v6_rank();
  const double ckpt = estimate_training_memory(m, c).activations;
  c.train.checkpointing = Checkpointing::none;
  const double plain = estimate_training_memory(m, c).activations;
  EXPECT_GT(plain, 5 * ckpt);
  c.train.checkpointing = Checkpointing::layer;
  double last = ckpt;
  for (int64_t keep : {1, 8, 24, 47}) {
    c.train.keep_layers = keep;
    const double a = estimate_training_memory(m, c).activations;
    EXPECT_GT(a, last) << "keep_layers " << keep;
    last = a;
  }
  for (int64_t keep : {48, 100}) {  // every layer kept: the plain estimate
    c.train.keep_layers = keep;
    EXPECT_DOUBLE_EQ(estimate_training_memory(m, c).activations, plain) << "keep_layers " << keep;
  }
  c.train.checkpointing = Checkpointing::none;  // without checkpointing keep_layers changes nothing
  c.train.keep_layers = 3;
  EXPECT_DOUBLE_EQ(estimate_training_memory(m, c).activations, plain);
}

// train.memory_budget_gb: the most kept layers whose estimate fits (so one more does not),
// all of them for a budget beyond the plain estimate, and a refusal below the checkpointed one.
TEST(MemoryEstimate, ABudgetKeepsTheMostLayersThatFit) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = v6_rank();
  auto with_keep = [&](int64_t k) {
    auto k_cfg = v6_rank();
    k_cfg.train.keep_layers = k;
    return estimate_training_memory(m, k_cfg).total();
  };
  for (int64_t want : {0, 1, 17, 40, 46}) {
    c.train.memory_budget_gb = (with_keep(want) + 1e6) / 1e9;  // 1 MB above K layers' estimate
    EXPECT_EQ(kept_layers(m, c), want) << "budget " << c.train.memory_budget_gb;
    const auto est = estimate_training_memory(m, c);
    EXPECT_EQ(est.kept_layers, want);
    EXPECT_LE(est.total(), c.train.memory_budget_gb * 1e9);
    EXPECT_GT(with_keep(want + 1), c.train.memory_budget_gb * 1e9);
    EXPECT_NO_THROW(check_memory_fits(est, 141e9, "cuda:0", c));
  }
  // Every layer kept costs less than 47 (no layer is being recomputed): a budget that fits it
  // keeps all 48.
  c.train.memory_budget_gb = (with_keep(48) + 1e6) / 1e9;
  EXPECT_LT(with_keep(48), with_keep(47));
  EXPECT_EQ(kept_layers(m, c), 48);
  c.train.memory_budget_gb = (with_keep(0) - 1e6) / 1e9;  // below every layer recomputed
  EXPECT_EQ(kept_layers(m, c), 0);
  try {
    check_memory_fits(estimate_training_memory(m, c), 141e9, "cuda:0", c);
    ADD_FAILURE() << "a budget below the checkpointed estimate was accepted";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(" is below what this config needs with every layer recomputed"), std::string::npos) << msg;
  }
  c.train.memory_budget_gb = 0;  // off: keep_layers decides
  c.train.keep_layers = 5;
  EXPECT_EQ(kept_layers(m, c), 5);
  c.train.checkpointing = Checkpointing::none;
  EXPECT_EQ(kept_layers(m, c), 48);
}

// train.checkpointing = "auto" (the default): on a GPU a budget of 90% of its memory, so the
// 14B v6 rank keeps some layers on an 80 GB card and every layer on a 141 GB one; a budget or
// keep_layers of the config's own wins; on the CPU (capacity 0) every layer is recomputed.
TEST(MemoryEstimate, AutoCheckpointingKeepsWhatFitsTheDevice) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  const auto c = v6_rank();
  ASSERT_EQ(c.train.checkpointing, Checkpointing::automatic);
  const auto h200 = resolve_checkpointing(c, 141e9);
  EXPECT_EQ(h200.train.checkpointing, Checkpointing::layer);
  EXPECT_DOUBLE_EQ(h200.train.memory_budget_gb, kAutoBudgetShare * 141);
  EXPECT_EQ(kept_layers(m, h200), 48);
  const auto a100 = resolve_checkpointing(c, 80e9);
  const int64_t kept = kept_layers(m, a100);
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, 48);
  EXPECT_LE(estimate_training_memory(m, a100).total(), 0.9 * 80e9);
  const auto cpu = resolve_checkpointing(c, 0);
  EXPECT_EQ(cpu.train.checkpointing, Checkpointing::layer);
  EXPECT_EQ(kept_layers(m, cpu), 0);
  auto own = c;
  own.train.memory_budget_gb = 30;
  EXPECT_DOUBLE_EQ(resolve_checkpointing(own, 141e9).train.memory_budget_gb, 30);
  own.train.memory_budget_gb = 0;
  own.train.keep_layers = 3;
  EXPECT_EQ(kept_layers(m, resolve_checkpointing(own, 141e9)), 3);
  auto none = c;
  none.train.checkpointing = Checkpointing::none;
  EXPECT_EQ(resolve_checkpointing(none, 141e9).train.checkpointing, Checkpointing::none);
}

}  // namespace
}  // namespace r1dist::test
