// NF4 quantisation (bitsandbytes' layout, include/r1dist/quant/nf4.h): hand-checked blocks,
// adversarial inputs, storage cost, and the CUDA kernel against the ATen reference where CUDA
// exists. The parity test against the independent Python quantiser lives in
// test_nf4_reference.cpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <vector>

#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "r1dist/base/error.h"
#include "r1dist/quant/nf4.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

at::Tensor code_values() {
  return at::tensor(std::vector<float>(nf4::code().begin(), nf4::code().end()), at::kFloat);
}

TEST(Nf4, ExactCodeValuesRoundTripExactly) {
  // Every code value times 3, in order, four times: block absmax is 3 and each element maps
  // back to its own code.
  auto w = (code_values() * 3.0f).repeat({4});  // 64 values, one block
  auto q = nf4::quantize(w, /*double_quant=*/false);
  EXPECT_FLOAT_EQ(q.absmax[0].item<float>(), 3.0f);
  // first element in the high nibble: codes 0,1 -> 0x01; 14,15 -> 0xEF
  EXPECT_EQ(q.packed[0].item<uint8_t>(), 0x01);
  EXPECT_EQ(q.packed[7].item<uint8_t>(), 0xEF);
  EXPECT_TRUE(nf4::dequantize(q, at::kFloat).equal(w));
}

TEST(Nf4, AllZerosNegativeOnlyAndOneOutlier) {
  auto zeros = at::zeros({2, 64});
  auto qz = nf4::quantize(zeros, false);
  EXPECT_TRUE(nf4::dequantize(qz, at::kFloat).equal(zeros));
  EXPECT_EQ(qz.packed[0].item<uint8_t>(), 0x77);  // code index 7 is 0.0

  auto neg = -at::rand({64}) - 0.5;
  auto qn = nf4::quantize(neg, false);
  auto idx_hi = qn.packed.__rshift__(4);
  EXPECT_TRUE((idx_hi <= 7).all().item<bool>());  // negative values never take positive codes
  EXPECT_FLOAT_EQ(qn.absmax[0].item<float>(), neg.abs().max().item<float>());

  auto outlier = at::full({64}, 0.01f);
  outlier[10] = 100.0f;
  auto qo = nf4::quantize(outlier, false);
  auto back = nf4::dequantize(qo, at::kFloat);
  EXPECT_FLOAT_EQ(back[10].item<float>(), 100.0f);
  EXPECT_FLOAT_EQ(back[0].item<float>(), 0.0f);  // 1e-4 of absmax rounds to the 0 code
}

TEST(Nf4, MidpointsGoToTheLowerCode) {
  // x / absmax exactly on a threshold: strict '>' keeps the lower code.
  const auto c = code_values();
  auto mids = (c.slice(0, 0, -1) + c.slice(0, 1)) / 2.0;  // 15 thresholds
  auto w = at::zeros({64});
  w[0] = 1.0f;  // absmax 1, so x / absmax == x
  w.slice(0, 1, 16).copy_(mids);
  auto q = nf4::quantize(w, false);
  auto back = nf4::dequantize(q, at::kFloat);
  for (int i = 0; i < 15; ++i) EXPECT_FLOAT_EQ(back[1 + i].item<float>(), c[i].item<float>()) << "threshold " << i;
}

TEST(Nf4, NanAndInfAreRefusedWithTheirIndex) {
  auto w = at::randn({4, 64});
  w[2][5] = std::numeric_limits<float>::quiet_NaN();
  try {
    nf4::quantize(w, true, "model.layers.0.mlp.up_proj.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("flat index 133"), std::string::npos) << e.what();
  }
  w[2][5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(nf4::quantize(w, true), Error);
}

// quantize_async + finish: the same NF4 tensors as quantize (codes, absmax storage, the
// offset set by finish, not before), and quantize's error for the first weight that held NaN.
TEST(Nf4, DeferredQuantisationEqualsQuantizeAndRefusesNanAtFinish) {
  std::vector<at::Device> devices{at::Device(at::kCPU)};
  if (at::hasCUDA()) devices.emplace_back(at::kCUDA, 0);
  for (const auto& dev : devices) {
    SCOPED_TRACE(dev.str());
    const auto a = (at::randn({300, 64}) * 2).to(dev), b = at::randn({3, 64}).to(dev);
    std::vector<nf4::NF4Tensor> out(3);
    nf4::PendingQuantization pending;
    nf4::quantize_async(out[0], a, true, "a", pending);
    nf4::quantize_async(out[1], b, false, "b", pending);
    nf4::quantize_async(out[2], b, true, "b2", pending);
    EXPECT_EQ(pending.size(), 3u);
    EXPECT_EQ(out[0].absmax_offset, 0.0f);  // pending
    pending.finish();
    EXPECT_EQ(pending.size(), 0u);
    const auto want_a = nf4::quantize(a, true), want_b = nf4::quantize(b, false), want_b2 = nf4::quantize(b, true);
    EXPECT_TRUE(out[0].packed.equal(want_a.packed));
    EXPECT_TRUE(out[0].absmax_q.equal(want_a.absmax_q));
    EXPECT_TRUE(out[0].absmax_scale.equal(want_a.absmax_scale));
    EXPECT_EQ(out[0].absmax_offset, want_a.absmax_offset);
    EXPECT_NE(out[0].absmax_offset, 0.0f);
    EXPECT_EQ(out[0].absmax_offset,
              static_cast<float>(nf4::quantize(a, false).absmax.to(at::kDouble).mean().item<double>()));
    EXPECT_TRUE(out[1].absmax.equal(want_b.absmax));
    EXPECT_EQ(out[2].absmax_offset, want_b2.absmax_offset);

    auto bad = at::randn({2, 64});
    bad[1][3] = std::numeric_limits<float>::infinity();
    auto worse = bad.clone();
    worse[0][0] = std::numeric_limits<float>::quiet_NaN();
    std::vector<nf4::NF4Tensor> more(3);
    nf4::quantize_async(more[0], a, true, "fine", pending);
    nf4::quantize_async(more[1], bad.to(dev), true, "model.layers.1.mlp.down_proj.weight", pending);
    nf4::quantize_async(more[2], worse.to(dev), true, "later", pending);
    try {
      pending.finish();
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("flat index 67"), std::string::npos) << e.what();
    }
  }
}

TEST(Nf4, DoubleQuantisedAbsmaxIsClose) {
  // 300 blocks: two nested blocks, the second partial.
  auto w = at::randn({300, 64}) * at::rand({300, 1}) * 3;
  auto q1 = nf4::quantize(w, false), q2 = nf4::quantize(w, true);
  EXPECT_TRUE(q1.packed.equal(q2.packed));  // codes do not depend on the absmax storage
  auto a1 = q1.absmax, a2 = nf4::absmax(q2);
  EXPECT_EQ(q2.absmax_scale.numel(), 2);
  // The 8-bit dynamic map's coarsest step is 0.9/64 of the nested scale (max |absmax - mean|
  // in each group of 256 blocks): the absmax error stays within half of it.
  const double off = a1.mean().item<double>();
  for (int64_t g = 0; g < 2; ++g) {
    auto s1 = a1.slice(0, g * 256, std::min<int64_t>(300, (g + 1) * 256));
    auto s2 = a2.slice(0, g * 256, std::min<int64_t>(300, (g + 1) * 256));
    const double scale = (s1 - off).abs().max().item<double>();
    EXPECT_LE((s2 - s1).abs().max().item<double>(), 0.9 / 64 / 2 * scale * 1.001) << "group " << g;
  }
  // Each weight is within half the widest NF4 code gap (-1 to -0.696) of its block's absmax, plus the
  // absmax error.
  auto back = nf4::dequantize(q2, at::kFloat);
  auto bound = 0.153 * a1.unsqueeze(1) + (a2 - a1).abs().unsqueeze(1) * 1.0001 + 1e-6;
  EXPECT_TRUE(((back - w).abs() <= bound).all().item<bool>());
}

TEST(Nf4, DynamicMapHas256SortedValues) {
  const auto& m = nf4::dynamic_map();
  ASSERT_EQ(m.size(), 256u);
  EXPECT_NEAR(m.front(), -0.99296875, 1e-6);  // -(last midpoint of linspace(0.1, 1, 65))
  EXPECT_EQ(m[127], 0.0f);  // 127 negative values, then 0
  EXPECT_FLOAT_EQ(m.back(), 1.0f);
  EXPECT_TRUE(std::is_sorted(m.begin(), m.end()));
  EXPECT_EQ(std::count(m.begin(), m.end(), 0.0f), 1);
}

TEST(Nf4, StorageIsAboutHalfAByteAWeight) {
  auto w = at::randn({1024, 2048});
  auto q = nf4::quantize(w, true);
  const double bpw = double(q.storage_bytes()) / double(w.numel());
  EXPECT_LE(bpw, 0.52);
  EXPECT_GE(bpw, 0.5);
}

TEST(Nf4, OddSizesAndPartialBlocks) {
  auto w = at::randn({7, 13});  // 91 elements: a partial block, an odd count
  auto q = nf4::quantize(w, true);
  EXPECT_EQ(q.packed.numel(), 46);
  auto back = nf4::dequantize(q, at::kFloat);
  EXPECT_EQ(back.sizes(), w.sizes());
  EXPECT_LT(((back - w).abs()).max().item<double>(), 0.2 * w.abs().max().item<double>());
}

TEST(Nf4, CudaKernelMatchesTheReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  for (auto shape : std::vector<std::vector<int64_t>>{{256, 1536}, {7, 13}, {3, 64 * 257}}) {
    auto w = at::randn(shape, at::kCUDA);
    for (bool dq : {true, false}) {
      auto q = nf4::quantize(w, dq);
      for (auto dt : {at::kBFloat16, at::kFloat}) {
        auto got = nf4::dequantize(q, dt).to(at::kFloat).cpu();
        auto want = nf4::dequantize_reference(q, dt).to(at::kFloat).cpu();
        EXPECT_TRUE(got.equal(want)) << "shape " << shape[0] << "x" << shape[1] << " dq " << dq << " dtype "
                                     << c10::toString(dt) << " max diff " << (got - want).abs().max().item<double>();
      }
    }
  }
}


// The planner of the few-row kernel: a valid plan for any shape; four features per warp and
// the fewest splits that give the warps wanted (16 per multiprocessor at one row of x, 8 at
// more; 132 multiprocessors here, an H200), never more splits than a row has 16-byte steps
// per lane.
TEST(Nf4, GemvPlanFillsTheGpuWithTheFewestSplits) {
  auto plan = [](int64_t n, int64_t k, int64_t rows, bool q) {
    const auto p = nf4::gemv_plan(n, k, rows, q, 132);
    return std::to_string(p.rows_per_warp) + "x" + std::to_string(p.splits);
  };
  EXPECT_EQ(plan(18944, 3584, 1, true), "4x1");   // 7B gate_proj: 4,736 warps as it is
  EXPECT_EQ(plan(3584, 18944, 1, true), "4x4");   // 7B down_proj: 896 x 4 warps
  EXPECT_EQ(plan(3584, 18944, 4, true), "4x2");   // the same at four rows: 896 x 2
  EXPECT_EQ(plan(5120, 5120, 1, true), "4x2");    // 14B q_proj
  EXPECT_EQ(plan(5120, 5120, 4, true), "4x1");
  EXPECT_EQ(plan(512, 3584, 1, true), "1x4");     // 7B k_proj: as many splits as steps, short of the target
  EXPECT_EQ(plan(3584, 3584, 1, false), "4x4");   // dense: 14 steps of 256 values
  EXPECT_EQ(plan(16, 64, 1, true), "1x1");        // one step: no split
  for (int64_t n : {1, 3, 17, 1000, 152064})
    for (int64_t k : {8, 64, 1024, 4096, 30000})
      for (int64_t rows : {1, 2, 4})
        for (bool q : {true, false})
          for (int sms : {1, 8, 132}) {
            const auto p = nf4::gemv_plan(n, k, rows, q, sms);
            EXPECT_TRUE(p.rows_per_warp == 1 || p.rows_per_warp == 4) << n << " " << k;
            EXPECT_TRUE(p.splits == 1 || p.splits == 2 || p.splits == 4 || p.splits == 8) << n << " " << k;
            const int64_t steps = (k + (q ? 1024 : 256) - 1) / (q ? 1024 : 256);
            EXPECT_LE(p.splits, std::max<int64_t>(1, steps)) << n << " " << k;
          }
  EXPECT_THROW(nf4::gemv_plan(0, 64, 1, true, 132), Error);
}

// The few-row kernel of decoding (nf4::gemv_cuda) against dequantize + at::linear, for NF4
// (double-quantised or not) and dense weights, bf16 and fp16, every row count it takes
// (1, 2, 3 and 4), with and without a bias, at every plan (including splits with no columns
// to take, and warps past the last feature); the operands it cannot take are refused, so
// that LoraLinear falls back to the general path.
TEST(Nf4, FewRowProductMatchesDequantizeAndLinear) {
#ifndef R1DIST_WITH_CUDA
  GTEST_SKIP() << "no CUDA in this build";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA on this machine";
  at::manual_seed(7);
  const auto gpu = at::TensorOptions().device(at::kCUDA);
  // 4,300 features: the four-per-warp path on any GPU of up to 134 multiprocessors, with a
  // last warp of fewer than four.
  std::vector<nf4::GemvPlan> plans{{}};
  for (int r : {1, 4})
    for (int s : {1, 2, 4, 8}) plans.push_back({r, s});
  for (auto nk : std::vector<std::pair<int64_t, int64_t>>{{72, 128}, {257, 3584}, {40, 64 * 5}, {4300, 192}}) {
    const auto [N, K] = nk;
    const auto w32 = at::randn({N, K}, gpu) * 0.05;
    const auto b32 = at::randn({N}, gpu) * 0.1;
    for (bool dq : {true, false}) {
      const auto q = nf4::quantize(w32, dq);
      for (auto dt : {at::kBFloat16, at::kHalf}) {
        for (int64_t rows : {1, 2, 3, 4}) {
          const auto x = at::randn({rows, K}, gpu.dtype(dt));
          for (bool with_bias : {false, true}) {
            const auto b = with_bias ? b32.to(dt) : at::Tensor();
            for (bool nf : {true, false}) {
              const auto wd = w32.to(dt);
              const nf4::NF4Tensor* qp = nf ? &q : nullptr;
              ASSERT_TRUE(nf4::gemv_applies(x, qp, wd, b));
              const auto want = at::linear(x, nf ? nf4::dequantize(q, dt) : wd, b).to(at::kFloat);
              // Every plan (features per warp x splits of K) and the one gemv_plan picks.
              for (const auto plan : plans) {
                const auto got = nf4::gemv_cuda(x, qp, wd, b, plan).to(at::kFloat);
                ASSERT_EQ(got.sizes(), want.sizes());
                // The same weights unrounded, fp32 sums in another order, one rounding: within
                // a few units in the last place of the output's dtype.
                const double tol = (dt == at::kBFloat16 ? 2e-2 : 3e-3) * want.abs().max().item<double>();
                EXPECT_LE((got - want).abs().max().item<double>(), tol)
                    << N << "x" << K << " dq " << dq << " " << c10::toString(dt) << " rows " << rows << " bias "
                    << with_bias << " nf4 " << nf << " plan " << plan.rows_per_warp << "x" << plan.splits;
              }
            }
          }
        }
      }
    }
  }
  // Refused: too many rows, fp32, K not a multiple of 64 for NF4, a misaligned x, the CPU.
  const auto w = at::randn({16, 128}, gpu);
  const auto q = nf4::quantize(w, true);
  const auto wb = w.to(at::kBFloat16);
  EXPECT_FALSE(nf4::gemv_applies(at::randn({nf4::kMmaMaxRows + 1, 128}, gpu.dtype(at::kBFloat16)), &q, wb, {}));
  EXPECT_FALSE(nf4::gemv_applies(at::randn({1, 128}, gpu), &q, w, {}));
  const auto q96 = nf4::quantize(at::randn({16, 96}, gpu), true);
  EXPECT_FALSE(nf4::gemv_applies(at::randn({1, 96}, gpu.dtype(at::kBFloat16)), &q96, {}, {}));
  EXPECT_FALSE(nf4::gemv_applies(at::randn({1, 129}, gpu.dtype(at::kBFloat16)).narrow(1, 1, 128), &q, wb, {}));
  EXPECT_FALSE(nf4::gemv_applies(at::randn({1, 128}, at::kBFloat16), &q, wb, {}));
#endif
}

// From 2 to kMmaMaxRows rows of x the products go through tensor cores (mma.sync, the rows
// padded to 16): dense against at::linear, NF4 (double-quantised or not) against dequantize +
// at::linear, bf16 and fp16, with and without a bias, rows that fill one or both halves of the
// 16-row operand, K with a partial 32-column chunk or a half 128-column NF4 span (and K = 8, a
// quarter chunk), features not a multiple of 8, under every plan of kMmaPlans (tiles, warps,
// chunks in flight); more rows than kMmaMaxRows are refused.
TEST(Nf4, TensorCoreFewRowProductMatchesLinear) {
#ifndef R1DIST_WITH_CUDA
  GTEST_SKIP() << "no CUDA in this build";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA on this machine";
  if (!nf4::mma_enabled()) GTEST_SKIP() << "R1DIST_GEMV_MMA=0 or R1DIST_GEMV=0";
  at::manual_seed(9);
  const auto gpu = at::TensorOptions().device(at::kCUDA);
  // K = 3,584: 112 chunks, so 16 warps with four chunks each in flight end on a partial round.
  for (auto nk : std::vector<std::pair<int64_t, int64_t>>{
           {37, 8}, {37, 64}, {72, 264}, {72, 192}, {257, 3584}, {67, 1000}, {200, 128}}) {
    const auto [N, K] = nk;
    const auto w32 = at::randn({N, K}, gpu) * 0.05;
    const auto b32 = at::randn({N}, gpu) * 0.1;
    std::vector<std::pair<bool, bool>> kinds{{false, false}};  // (nf4, double quantisation)
    if (K % 64 == 0) kinds.insert(kinds.end(), {{true, true}, {true, false}});
    for (const auto [nf, dq] : kinds) {
      const auto q = nf ? nf4::quantize(w32, dq) : nf4::NF4Tensor{};
      for (auto dt : {at::kBFloat16, at::kHalf})
        for (int64_t rows : {2, 5, 8, 9, 16}) {
          const auto x = at::randn({rows, K}, gpu.dtype(dt));
          const auto w = nf ? nf4::dequantize(q, dt) : w32.to(dt);
          for (bool with_bias : {false, true}) {
            const auto b = with_bias ? b32.to(dt) : at::Tensor();
            ASSERT_TRUE(nf4::gemv_applies(x, nf ? &q : nullptr, w, b));
            const auto want = at::linear(x, w, b).to(at::kFloat);
            // The same weights in x's dtype, fp32 sums in another order, one rounding.
            const double tol = (dt == at::kBFloat16 ? 2e-2 : 3e-3) * want.abs().max().item<double>();
            for (const auto& mp : nf4::kMmaPlans) {
              const auto got = nf4::gemv_cuda(x, nf ? &q : nullptr, w, b, {}, mp).to(at::kFloat);
              ASSERT_EQ(got.sizes(), want.sizes());
              EXPECT_LE((got - want).abs().max().item<double>(), tol)
                  << N << "x" << K << " nf4 " << nf << " dq " << dq << " " << c10::toString(dt) << " rows " << rows
                  << " bias " << with_bias << " plan " << nf4::to_string(mp);
            }
          }
        }
    }
  }
  const auto w = at::randn({16, 128}, gpu.dtype(at::kBFloat16));
  const auto q = nf4::quantize(w, true);
  const auto x17 = at::randn({nf4::kMmaMaxRows + 1, 128}, gpu.dtype(at::kBFloat16));
  EXPECT_FALSE(nf4::gemv_applies(x17, nullptr, w, {}));
  EXPECT_FALSE(nf4::gemv_applies(x17, &q, w, {}));
#endif
}

// mma_plan: dense weights on one tile and 8 warps, four chunks in flight (two on rows of
// 8,192 or more); NF4 on two tiles where that gives every multiprocessor a block, registers
// for two blocks of 8 warps per multiprocessor; always a compiled plan.
TEST(Nf4, MmaPlanPicksACompiledPlanPerShape) {
  auto plan = [](int64_t n, int64_t k, bool nf) { return nf4::to_string(nf4::mma_plan(n, k, 132, nf)); };
  EXPECT_EQ(plan(37888, 3584, false), "1x8x4");   // 7B gate and up
  EXPECT_EQ(plan(3584, 18944, false), "1x8x2");   // 7B down
  EXPECT_EQ(plan(4608, 3584, false), "1x8x4");    // 7B q, k, v
  EXPECT_EQ(plan(37888, 3584, true), "2x8x2");    // the same in NF4: 2,368 blocks of 16 features
  EXPECT_EQ(plan(3584, 18944, true), "2x8x2");    // 224 blocks on 132 multiprocessors
  EXPECT_EQ(plan(1024, 3584, true), "1x8x2");     // 64 blocks of 16 would leave some idle
  for (bool nf : {false, true})
    for (int64_t n : {1, 100, 4096, 40000, 300000})
      for (int64_t k : {8, 4096, 8192, 30000})
        for (int sms : {1, 80, 132, 256}) {
          const auto p = nf4::mma_plan(n, k, sms, nf);
          EXPECT_NE(std::find(std::begin(nf4::kMmaPlans), std::end(nf4::kMmaPlans), p), std::end(nf4::kMmaPlans))
              << n << " x " << k << " on " << sms << " nf4 " << nf << ": " << nf4::to_string(p);
        }
  EXPECT_THROW(nf4::mma_plan(0, 64, 132, false), Error);
  EXPECT_THROW(nf4::mma_plan(64, 0, 132, true), Error);
}

// Several weights of one input in one launch (decoding's q, k, v): each output equals that
// weight's own launch under the same plan bit for bit (the features are the same sums), NF4
// and dense, with and without biases, 1 and 4 rows (4: on tensor cores), a last part whose
// features are not a multiple of 8; refused: mixed NF4 and dense, more than kGemvMaxParts, and
// a part before the last whose features are not a multiple of four where a warp takes four.
TEST(Nf4, GroupedFewRowProductsEqualOneLaunchPerWeight) {
#ifndef R1DIST_WITH_CUDA
  GTEST_SKIP() << "no CUDA in this build";
#else
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA on this machine";
  at::manual_seed(8);
  const auto gpu = at::TensorOptions().device(at::kCUDA);
  const int64_t K = 256;
  const std::vector<int64_t> features{512, 64, 68};
  std::vector<at::Tensor> dense, bias;
  std::vector<nf4::NF4Tensor> quant;
  for (int64_t n : features) {
    const auto w = at::randn({n, K}, gpu) * 0.05;
    quant.push_back(nf4::quantize(w, true));
    dense.push_back(w.to(at::kBFloat16));
    bias.push_back((at::randn({n}, gpu) * 0.1).to(at::kBFloat16));
  }
  for (bool nf : {true, false})
    for (int64_t rows : {1, 4}) {
      const auto x = at::randn({rows, K}, gpu.dtype(at::kBFloat16));
      std::vector<nf4::GemvPart> parts;
      for (size_t i = 0; i < features.size(); ++i)
        parts.push_back({nf ? &quant[i] : nullptr, dense[i], i == 1 ? at::Tensor() : bias[i]});
      ASSERT_TRUE(nf4::gemv_parts_apply(x, parts));
      // The CUDA-core kernel's plans, and at four rows on tensor cores every compiled plan.
      std::vector<std::pair<nf4::GemvPlan, nf4::MmaPlan>> plans{{nf4::gemv_plan_for(x, parts), {}}};
      for (int r : {1, 4})
        for (int s : {1, 2, 4, 8}) plans.push_back({{r, s}, {}});
      if (rows > 1)
        for (const auto& mp : nf4::kMmaPlans) plans.push_back({{}, mp});
      for (const auto& [plan, mma] : plans) {
        const auto got = nf4::gemv_cuda_parts(x, parts, plan, mma);
        ASSERT_EQ(got.size(), parts.size());
        for (size_t i = 0; i < parts.size(); ++i)
          EXPECT_TRUE(got[i].equal(nf4::gemv_cuda(x, parts[i].q, parts[i].w, parts[i].bias, plan, mma)))
              << "part " << i << " nf4 " << nf << " rows " << rows << " plan " << plan.rows_per_warp << "x"
              << plan.splits << " tensor-core plan " << nf4::to_string(mma);
      }
    }
  const auto x = at::randn({1, K}, gpu.dtype(at::kBFloat16));
  EXPECT_FALSE(nf4::gemv_parts_apply(x, {{&quant[0], {}, {}}, {nullptr, dense[1], {}}})) << "NF4 beside dense";
  std::vector<nf4::GemvPart> many(nf4::kGemvMaxParts + 1, nf4::GemvPart{&quant[0], {}, {}});
  EXPECT_FALSE(nf4::gemv_parts_apply(x, many));
  // 6 + 16,384 features: four per warp (on a GPU of up to 256 multiprocessors), and a first
  // part of 6 would put one warp's four in two parts (a last part of any size ends the features).
  const auto wide = nf4::quantize(at::randn({16384, K}, gpu), true), six = nf4::quantize(at::randn({6, K}, gpu), true);
  ASSERT_EQ(nf4::gemv_plan_for(x, {{&six, {}, {}}, {&wide, {}, {}}}).rows_per_warp, 4);
  EXPECT_FALSE(nf4::gemv_parts_apply(x, {{&six, {}, {}}, {&wide, {}, {}}}));
#endif
}

}  // namespace
}  // namespace r1dist
