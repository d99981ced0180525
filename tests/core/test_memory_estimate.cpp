// The memory estimate (config/memory_estimate.h): the v6 shape's figure that
// docs/RELIABILITY.md compares with the measured peak, and how train.checkpointing,
// train.keep_layers, train.recompute_mlp_layers and train.memory_budget_gb move the activations.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

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

// The v6 settings at 8192 x 1 (the measured single-row shape), with `checkpointing`.
Config one_row(Checkpointing checkpointing = Checkpointing::automatic) {
  auto c = v6_rank();
  c.train.micro_batch = 1;
  c.train.checkpointing = checkpointing;
  return c;
}

TEST(MemoryEstimate, TheV6RankOfThe14BPreset) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  const auto est = estimate_training_memory(m, v6_rank());
  EXPECT_NEAR(est.total() / 1e9, 23.7, 0.1) << est.describe();
  // Measured on one H200 (`r1dist bench train --preset r1-distill-qwen-14b --seq 8192
  // --micro-batch 2 --checkpointing layer`, 2026-12-01): 23.0 GB peak with the fused layer
  // (again 23.0 on 2026-12-04), 23.4 GB with the plain ATen one (R1DIST_FUSED=0); each
  // estimate stays above its peak.
  EXPECT_GE(est.total() / 1e9, 23.0);
  const auto plain = estimate_training_memory(m, v6_rank(), LayerPath::plain);
  EXPECT_NEAR(plain.total() / 1e9, 25.0, 0.1) << plain.describe();
  EXPECT_GE(plain.total() / 1e9, 23.4);
  // Without recomputation the plain path keeps far more per layer.
  auto none = v6_rank();
  none.train.checkpointing = Checkpointing::none;
  EXPECT_GT(estimate_training_memory(m, none, LayerPath::plain).activations,
            1.3 * estimate_training_memory(m, none, LayerPath::fused).activations);
}

// Peaks measured on one H200 by `r1dist bench train` (seq 8192, micro-batch 1, NF4, bf16,
// fused kernels; tools/gpu/bench_train.sh, docs/PERFORMANCE.md; 2026-12-04, with the loss
// kernels and the plans with recomputed MLPs): the estimate is at or above each, and not more
// than 12% above.
TEST(MemoryEstimate, TracksThePeaksMeasuredOnAnH200) {
  struct Measured {
    const char* preset;
    Checkpointing ckpt;
    int64_t keep, mlp;  // train.keep_layers, train.recompute_mlp_layers
    double peak_gb;
  };
  for (const auto& m : {Measured{"r1-distill-qwen-1.5b", Checkpointing::layer, 0, 0, 3.8},
                        Measured{"r1-distill-qwen-1.5b", Checkpointing::none, 0, 0, 14.0},
                        Measured{"r1-distill-qwen-7b", Checkpointing::layer, 0, 0, 10.2},
                        Measured{"r1-distill-qwen-7b", Checkpointing::none, 0, 0, 32.2},
                        Measured{"r1-distill-qwen-14b", Checkpointing::layer, 0, 0, 17.1},
                        Measured{"r1-distill-qwen-14b", Checkpointing::layer, 0, 48, 30.4},
                        Measured{"r1-distill-qwen-14b", Checkpointing::layer, 0, 28, 24.6},
                        Measured{"r1-distill-qwen-14b", Checkpointing::layer, 42, 6, 49.1},
                        Measured{"r1-distill-qwen-14b", Checkpointing::none, 0, 0, 51.8}}) {
    Config c;
    c.train.micro_batch = 1;
    c.data.max_seq_len = 8192;
    c.train.checkpointing = m.ckpt;
    c.train.keep_layers = m.keep;
    c.train.recompute_mlp_layers = m.mlp;
    const auto est = estimate_training_memory(qwen2_preset(m.preset), c);
    const double gb = est.total() / 1e9;
    std::printf("%s checkpointing %s, %s: estimate %.1f GB, measured %.1f GB\n", m.preset,
                m.ckpt == Checkpointing::layer ? "layer" : "none",
                est.plan.describe(qwen2_preset(m.preset).num_hidden_layers).c_str(), gb, m.peak_gb);
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

// A layer that recomputes its MLP keeps less than a kept layer and more than a recomputed one;
// train.recompute_mlp_layers counts the layers before the kept ones.
TEST(MemoryEstimate, RecomputedMlpsKeepTheAttentionOnly) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = v6_rank();
  c.train.checkpointing = Checkpointing::layer;
  c.train.keep_layers = 8;
  const double keep8 = estimate_training_memory(m, c).activations;
  c.train.recompute_mlp_layers = 10;
  const auto est = estimate_training_memory(m, c);
  EXPECT_EQ(est.plan.layers, 30);
  EXPECT_EQ(est.plan.mlp, 10);
  EXPECT_EQ(est.plan.kept(48), 8);
  EXPECT_EQ(est.plan.describe(48), "30 recompute the whole layer, 10 only the MLP, 8 keep every activation");
  // Per token and layer: 4 hidden- and 2 kv-wide values (x 1.04) instead of the input alone.
  const double tokens = 2.0 * 8192, per_layer = tokens * (4.0 * 5120 + 2.0 * 1024) * 2 * 1.04 - tokens * 5120 * 2;
  EXPECT_NEAR(est.activations - keep8, 10 * per_layer, 1e3);
  c.train.recompute_mlp_layers = 100;  // capped at the layers left: none is recomputed whole
  EXPECT_EQ(recompute_plan(m, c).layers, 0);
  EXPECT_EQ(recompute_plan(m, c).mlp, 40);
  EXPECT_EQ(recompute_plan(m, c, LayerPath::plain).mlp, 40);  // set explicitly, the plain path runs it too
  // The share of a layer's forward that gate and up cost: about 45% of the 14B's at 8192
  // tokens, more at shorter sequences (less attention).
  EXPECT_NEAR(mlp_recompute_share(m, 8192), 0.446, 0.005);
  EXPECT_GT(mlp_recompute_share(m, 2048), mlp_recompute_share(m, 8192));
}

// train.offload_layers: spread evenly over the layers not recomputed whole; each moves its
// input, residual sum and (kept) gate and up to host memory, and two layers' worth may be on
// the device at once. The plain path offloads nothing.
TEST(MemoryEstimate, OffloadedLayersAreSpreadAndKeepTwoInFlight) {
  const RecomputePlan every_other{0, 0, 24};
  std::vector<int64_t> picked;
  for (int64_t i = 0; i < 48; ++i)
    if (every_other.offloaded(i, 48)) picked.push_back(i);
  ASSERT_EQ(picked.size(), 24u);
  for (size_t j = 0; j < picked.size(); ++j) EXPECT_EQ(picked[j], int64_t(2 * j + 1));
  const RecomputePlan capped{8, 4, 100};
  int64_t n = 0;
  for (int64_t i = 0; i < 48; ++i) n += capped.offloaded(i, 48) ? 1 : 0;
  EXPECT_EQ(n, 40);
  EXPECT_FALSE(capped.offloaded(7, 48));
  EXPECT_EQ(capped.describe(48),
            "8 recompute the whole layer, 4 only the MLP, 36 keep every activation; "
            "40 of the layers not recomputed keep activations in host memory");

  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = one_row(Checkpointing::none);
  const double kept = estimate_training_memory(m, c).activations;
  c.train.offload_layers = 24;
  const auto est = estimate_training_memory(m, c);
  EXPECT_EQ(est.plan.offload, 24);
  const double part = 8192.0 * (2.0 * 5120 + 2.0 * 13824) * 2 * 1.04;
  EXPECT_NEAR(kept - est.activations, (24 - kOffloadGroupsInFlight) * part, 1e3);
  EXPECT_NEAR(est.host, 24 * part / 1.04, 1e3);  // page-locked host memory, outside total()
  EXPECT_EQ(estimate_training_memory(m, c, LayerPath::plain).plan.offload, 0);
  // A budget's plan counts the offloaded layers: it recomputes less than without them.
  auto budget = one_row();
  budget.train.memory_budget_gb = 25.7;
  const auto without = recompute_plan(m, budget);
  budget.train.offload_layers = 24;
  const auto with = recompute_plan(m, budget);
  EXPECT_EQ(with.offload, 24);
  EXPECT_LT(double(with.layers) + mlp_recompute_share(m, 8192) * double(with.mlp),
            double(without.layers) + mlp_recompute_share(m, 8192) * double(without.mlp));
  EXPECT_LE(estimate_training_memory(m, budget).total(), 25.7e9);
}

// train.offload_recomputed_inputs: the layers recomputed whole move their input (one
// hidden-wide value per token) to host memory, two such inputs in flight; a budget's plan
// then recomputes fewer layers. Nothing moves on the plain path.
TEST(MemoryEstimate, RecomputedLayersInputsInHostMemory) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = v6_rank();  // 8192 x 2, every layer recomputed
  c.train.checkpointing = Checkpointing::layer;
  const auto on_device = estimate_training_memory(m, c);
  c.train.offload_recomputed_inputs = true;
  const auto est = estimate_training_memory(m, c);
  ASSERT_TRUE(est.plan.offload_inputs);
  ASSERT_EQ(est.plan.layers, 48);
  const double input = 16384.0 * 5120 * 2;
  EXPECT_NEAR(on_device.activations - est.activations, (48 - kOffloadGroupsInFlight) * input, 1e3);
  EXPECT_NEAR(est.host, 48 * input, 1e3);
  EXPECT_TRUE(est.plan.input_offloaded(0));
  EXPECT_FALSE(est.plan.input_offloaded(48));
  EXPECT_FALSE(estimate_training_memory(m, c, LayerPath::plain).plan.offload_inputs);
  // With kept layers: only the recomputed ones move their input.
  c.train.keep_layers = 8;
  const auto some = estimate_training_memory(m, c);
  EXPECT_EQ(some.plan.layers, 40);
  EXPECT_FALSE(some.plan.input_offloaded(40));
  EXPECT_NEAR(some.host, 40 * input, 1e3);
  // A budget's plan keeps more layers with the inputs moved, and still fits.
  auto budget = v6_rank();
  budget.train.memory_budget_gb = 25.7;
  const auto without = recompute_plan(m, budget);
  budget.train.offload_recomputed_inputs = true;
  const auto with = recompute_plan(m, budget);
  EXPECT_TRUE(with.offload_inputs);
  EXPECT_LT(double(with.layers) + mlp_recompute_share(m, 8192) * double(with.mlp),
            double(without.layers) + mlp_recompute_share(m, 8192) * double(without.mlp));
  EXPECT_LE(estimate_training_memory(m, budget).total(), 25.7e9);
  for (const int64_t off : {int64_t(0), int64_t(48)}) {  // the plans bench train would run
    budget.train.offload_layers = off;
    const auto e = estimate_training_memory(m, budget);
    EXPECT_LE(e.total(), 25.7e9);
    std::printf("v6 rank, budget 25.7 GB, offload_layers %lld + inputs: %s, estimate %s, host %.1f GB\n",
                static_cast<long long>(off), e.plan.describe(48).c_str(), e.describe().c_str(), e.host / 1e9);
  }
}

// train.offload_attention: the offloaded layers keep nothing on the device (q, k, v and the
// attention output move too) and recompute their attention: plan_cost counts it.
TEST(MemoryEstimate, OffloadedAttentionLeavesTheLayersNothingOnTheDevice) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = one_row(Checkpointing::none);
  const double kept = estimate_training_memory(m, c).activations;
  c.train.offload_layers = 24;
  c.train.offload_attention = true;
  const auto est = estimate_training_memory(m, c);
  ASSERT_TRUE(est.plan.offload_attention);
  const double layer = 8192.0 * (4.0 * 5120 + 2.0 * 1024 + 2.0 * 13824) * 2;
  EXPECT_NEAR(kept - est.activations, (24 - kOffloadGroupsInFlight) * layer * 1.04, 1e3);
  EXPECT_NEAR(est.host, 24 * layer, 1e3);
  EXPECT_NEAR(plan_cost(m, c, est.plan, {}), 24 * attention_recompute_share(m, 8192), 1e-9);
  EXPECT_NEAR(attention_recompute_share(m, 8192), 8192.0 * 5120 / (317.2e6), 0.001);
  EXPECT_FALSE(estimate_training_memory(m, c, LayerPath::plain).plan.offload_attention);
}

// plan_cost against the 14B at 8192 x 1 on an H200 (docs/PERFORMANCE.md, 2026-12-04): steps of
// 1.112 s without recomputation (7,370 tokens/s), a forward of 0.437 s over 48 layers, a link of
// 55 GB/s. The measured plans under 24 GiB, as (kept, MLP, offloaded) and tokens/s: off48 (48, 0,
// 48) 6,802; off32 (35, 1, 32) 6,494; off24 (29, 0, 24) 6,288; lean (0, 27, 0) 5,783. The step
// that plan_cost predicts (the plain step + cost x one layer's forward) is within 4% of each.
OffloadRates h200_rates(const Qwen2Config& m, int64_t seq) {
  // The rate at which one layer's forward took 0.437 / 48 s.
  const double h = double(m.hidden_size), inter = double(m.intermediate_size), kv = double(m.kv_dim());
  const double macs = h * (h + 2 * kv) + h * h + 3 * h * inter + double(seq) * h;
  return {55e9, 2 * macs * double(seq) / (0.437 / 48), 100e9};
}

TEST(MemoryEstimate, PlanCostPredictsTheMeasuredOffloadRows) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  const auto c = one_row();
  const auto rates = h200_rates(m, 8192);
  struct Row {
    RecomputePlan plan;
    double tokens_per_s;
  };
  const Row rows[] = {{{0, 0, 48}, 6802}, {{12, 1, 32}, 6494}, {{19, 0, 24}, 6288}, {{21, 27, 0}, 5783}};
  double previous = 0;
  for (const auto& r : rows) {
    const double cost = plan_cost(m, c, r.plan, rates);
    const double predicted = 1.112 + cost * 0.437 / 48, measured = 8192 / r.tokens_per_s;
    EXPECT_NEAR(predicted / measured, 1.0, 0.04) << r.plan.describe(48) << ": cost " << cost;
    EXPECT_GT(cost, previous) << r.plan.describe(48);  // the measured order
    previous = cost;
  }
  // Without rates the link is free: the recomputation alone.
  EXPECT_DOUBLE_EQ(plan_cost(m, c, {0, 0, 48}, {}), 0.0);
  EXPECT_NEAR(plan_cost(m, c, {21, 27, 0}, {}), 21 + 27 * mlp_recompute_share(m, 8192), 1e-9);
}

// train.offload = "auto": the budget's plan also chooses the offloaded layers and inputs; it is
// no slower (plan_cost) than any measured plan, fits the budget and the host memory, offloads
// nothing where the link is too slow or nothing needs it, and nothing on the plain path.
TEST(MemoryEstimate, AutomaticOffloadPlansWithTheLinkAndTheHostMemory) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  auto c = one_row();
  c.train.memory_budget_gb = 25.7;
  c.train.offload = OffloadChoice::automatic;
  const auto rates = h200_rates(m, 8192);
  const auto est = estimate_training_memory(m, c, LayerPath::fused, rates);
  std::printf("14B 8192 x 1, 25.7 GB, auto: %s, cost %.2f, estimate %s, host %.1f GB\n", est.plan.describe(48).c_str(),
              plan_cost(m, c, est.plan, rates), est.describe().c_str(), est.host / 1e9);
  EXPECT_LE(est.total(), 25.7e9);
  EXPECT_LE(est.host, rates.host_bytes);
  EXPECT_GT(est.host, 0.0);
  EXPECT_LE(plan_cost(m, c, est.plan, rates), plan_cost(m, c, {0, 0, 48}, rates) + 1e-9);
  // Less host memory: a plan within it.
  auto small_host = rates;
  small_host.host_bytes = 10e9;
  const auto within = estimate_training_memory(m, c, LayerPath::fused, small_host);
  EXPECT_LE(within.host, 10e9);
  EXPECT_GT(within.host, 0.0);
  EXPECT_GE(plan_cost(m, c, within.plan, small_host), plan_cost(m, c, est.plan, rates));
  // A slow link (1 GB/s): the manual plan without offload.
  auto slow = rates;
  slow.link_bytes_per_s = 1e9;
  auto manual = c;
  manual.train.offload = OffloadChoice::manual;
  const auto none = recompute_plan(m, manual);
  const auto slow_plan = recompute_plan(m, c, LayerPath::fused, slow);
  EXPECT_EQ(slow_plan.offload, 0);
  EXPECT_FALSE(slow_plan.offload_inputs);
  EXPECT_EQ(slow_plan.layers, none.layers);
  EXPECT_EQ(slow_plan.mlp, none.mlp);
  // Room to spare: nothing recomputed, nothing moved.
  auto roomy = c;
  roomy.train.memory_budget_gb = 100;
  const auto spare = recompute_plan(m, roomy, LayerPath::fused, rates);
  EXPECT_EQ(spare.layers + spare.mlp + spare.offload, 0);
  EXPECT_FALSE(spare.offload_inputs);
  // Unknown rates (the CPU) and the plain path: nothing moved.
  EXPECT_EQ(recompute_plan(m, c, LayerPath::fused, {}).offload, 0);
  EXPECT_EQ(estimate_training_memory(m, c, LayerPath::plain, rates).host, 0.0);
  // The v6 shape (8192 x 2): no slower than the measured off48 plan there (0, 5, 5).
  auto v6 = c;
  v6.train.micro_batch = 2;
  const auto v6_est = estimate_training_memory(m, v6, LayerPath::fused, rates);
  std::printf("14B 8192 x 2, 25.7 GB, auto: %s, cost %.2f, estimate %s, host %.1f GB\n",
              v6_est.plan.describe(48).c_str(), plan_cost(m, v6, v6_est.plan, rates), v6_est.describe().c_str(),
              v6_est.host / 1e9);
  EXPECT_LE(v6_est.total(), 25.7e9);
  EXPECT_LT(plan_cost(m, v6, v6_est.plan, rates), plan_cost(m, v6, {43, 0, 5}, rates));
}

// train.memory_budget_gb: the plan with the least recomputation (layers + share x MLP layers)
// that fits, checked against every plan; everything kept for a budget beyond the plain
// estimate, everything recomputed and a refusal below the checkpointed one.
TEST(MemoryEstimate, ABudgetPicksThePlanThatRecomputesLeast) {
  const auto m = qwen2_preset("r1-distill-qwen-14b");
  const int64_t layers = m.num_hidden_layers;
  auto c = v6_rank();
  c.train.checkpointing = Checkpointing::layer;
  auto total = [&](int64_t r, int64_t mlp) {
    auto k = c;
    k.train.memory_budget_gb = 0;
    k.train.keep_layers = layers - r - mlp;
    k.train.recompute_mlp_layers = mlp;
    return estimate_training_memory(m, k).total();
  };
  const double share = mlp_recompute_share(m, 8192);
  std::vector<std::vector<double>> totals(size_t(layers + 1));  // [recomputed layers][MLPs]
  for (int64_t r = 0; r <= layers; ++r)
    for (int64_t mlp = 0; r + mlp <= layers; ++mlp) totals[size_t(r)].push_back(total(r, mlp));
  for (double gb : {25.8, 30.0, 40.0, 60.0, 90.0}) {
    c.train.memory_budget_gb = gb;
    const auto est = estimate_training_memory(m, c);
    const auto p = est.plan;
    EXPECT_LE(est.total(), gb * 1e9) << gb;
    EXPECT_DOUBLE_EQ(est.total(), totals[size_t(p.layers)][size_t(p.mlp)]);
    const double cost = double(p.layers) + share * double(p.mlp);
    for (int64_t r = 0; r <= layers; ++r)
      for (int64_t mlp = 0; r + mlp <= layers; ++mlp)
        if (totals[size_t(r)][size_t(mlp)] <= gb * 1e9)
          EXPECT_GE(double(r) + share * double(mlp), cost - 1e-9)
              << gb << " GB: " << r << " + " << mlp << " fits and recomputes less than " << p.describe(layers);
    std::printf("budget %.1f GB: %s, estimate %s\n", gb, p.describe(layers).c_str(), est.describe().c_str());
  }
  c.train.memory_budget_gb = 25.8;  // 24 GiB: MLP recomputation instead of whole layers
  EXPECT_GT(recompute_plan(m, c).mlp, 0);
  c.train.memory_budget_gb = (total(0, 0) + 1e6) / 1e9;  // everything kept
  EXPECT_EQ(recompute_plan(m, c).layers + recompute_plan(m, c).mlp, 0);
  EXPECT_LT(total(0, 0), total(1, 0));  // no layer is being recomputed
  c.train.memory_budget_gb = (total(layers, 0) - 1e6) / 1e9;  // below every layer recomputed
  EXPECT_EQ(recompute_plan(m, c).layers, layers);
  try {
    check_memory_fits(estimate_training_memory(m, c), 141e9, "cuda:0", c);
    ADD_FAILURE() << "a budget below the checkpointed estimate was accepted";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(" is below what this config needs with every layer recomputed"), std::string::npos) << msg;
  }
  // The plain path recomputes whole layers only: the most kept layers that fit.
  c.train.memory_budget_gb = 40;
  const auto plain = recompute_plan(m, c, LayerPath::plain);
  EXPECT_EQ(plain.mlp, 0);
  EXPECT_LE(estimate_training_memory(m, c, LayerPath::plain).total(), 40e9);
  auto one_more = c;
  one_more.train.memory_budget_gb = 0;
  one_more.train.keep_layers = plain.kept(layers) + 1;
  EXPECT_GT(estimate_training_memory(m, one_more, LayerPath::plain).total(), 40e9);
  c.train.memory_budget_gb = 0;  // off: keep_layers decides
  c.train.keep_layers = 5;
  EXPECT_EQ(recompute_plan(m, c).kept(layers), 5);
  c.train.checkpointing = Checkpointing::none;
  EXPECT_EQ(recompute_plan(m, c).kept(layers), layers);
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
  EXPECT_EQ(recompute_plan(m, h200).kept(48), 48);
  const auto a100 = resolve_checkpointing(c, 80e9);
  const auto plan = recompute_plan(m, a100);
  EXPECT_GT(plan.kept(48), 0);
  EXPECT_LT(plan.kept(48), 48);
  EXPECT_LE(estimate_training_memory(m, a100).total(), 0.9 * 80e9);
  const auto cpu = resolve_checkpointing(c, 0);
  EXPECT_EQ(cpu.train.checkpointing, Checkpointing::layer);
  EXPECT_EQ(recompute_plan(m, cpu).layers, 48);
  auto own = c;
  own.train.memory_budget_gb = 30;
  EXPECT_DOUBLE_EQ(resolve_checkpointing(own, 141e9).train.memory_budget_gb, 30);
  own.train.memory_budget_gb = 0;
  own.train.keep_layers = 3;
  EXPECT_EQ(recompute_plan(m, resolve_checkpointing(own, 141e9)).kept(48), 3);
  auto none = c;
  none.train.checkpointing = Checkpointing::none;
  EXPECT_EQ(resolve_checkpointing(none, 141e9).train.checkpointing, Checkpointing::none);
}

// The attention is heads x head_dim wide (q_dim): where config.json sets head_dim apart from
// hidden_size / heads, q, o, the attention's products and the activations q and the attention
// output take that width, not hidden_size's.
TEST(MemoryEstimate, TheAttentionIsHeadsTimesHeadDimWide) {
  const auto m = qwen2_preset("r1-distill-qwen-1.5b");
  auto wide = m;
  wide.head_dim = 2 * m.head_dim;  // q_dim 3072 beside hidden_size 1536
  ASSERT_EQ(wide.q_dim(), 2 * wide.hidden_size);
  auto c = one_row(Checkpointing::none);
  const double seq = 8192, h = double(wide.hidden_size), q = double(wide.q_dim()), kv = double(wide.kv_dim()),
               inter = double(wide.intermediate_size);
  const double macs = h * (q + 2 * kv) + q * h + 3 * h * inter + seq * q;
  EXPECT_NEAR(layer_forward_flops(wide, c), 2 * macs * seq, 1e-9 * 2 * macs * seq);
  EXPECT_NEAR(attention_recompute_share(wide, 8192), seq * q / macs, 1e-12);
  // Every layer kept: each holds q and the attention output (q_dim), k and v (kv_dim) besides
  // the rest, in bf16 with the allocator's 4%.
  const double more = estimate_training_memory(wide, c).activations - estimate_training_memory(m, c).activations;
  const double per_token = 2 * (q - double(m.q_dim())) + 2 * (kv - double(m.kv_dim()));
  EXPECT_NEAR(more, double(m.num_hidden_layers) * seq * per_token * 2 * 1.04, 1e3);
}

}  // namespace
}  // namespace r1dist::test
