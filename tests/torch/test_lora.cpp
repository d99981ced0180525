// LoraLinear (QLoRA): forward equal to LoRA on the dequantised weight, gradients equal to
// autograd through the dense weight and to finite differences, the flat adapter buffer,
// adapters switched off, and parameter counts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "r1dist/peft/lora_adapters.h"
#include "r1dist/peft/lora_linear.h"
#include "r1dist/train/optim.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/base/error.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

// A quantised projection (out=48, in=128) with bias and a random (non-zero) adapter.
LoraLinear make_layer(at::ScalarType adapter_dtype, int64_t r = 4) {
  LoraLinear l;
  l.weight = at::randn({48, 128}) * 0.1;
  l.bias = at::randn({48}) * 0.1;
  l.quantize(true, "test.weight");
  l.lora_A = (at::randn({r, 128}, adapter_dtype) * 0.1).requires_grad_(true);
  l.lora_B = (at::randn({48, r}, adapter_dtype) * 0.1).requires_grad_(true);
  l.scaling = 16.0 / r;
  return l;
}

// The same function written with plain autograd ops on the dense (dequantised) weight.
at::Tensor reference_forward(const LoraLinear& l, const at::Tensor& x, const at::Tensor& A, const at::Tensor& B) {
  auto w = nf4::dequantize(l.qweight, x.scalar_type());
  return at::linear(x, w, l.bias.to(x.scalar_type())) + at::linear(at::linear(x, A), B) * l.scaling;
}

TEST(Lora, QloraForwardEqualsLoraOnTheDequantisedWeight) {
  at::manual_seed(1);
  auto l = make_layer(at::kFloat);
  auto x = at::randn({2, 5, 128});
  auto y = l.forward(x);
  auto ref = reference_forward(l, x, l.lora_A, l.lora_B);
  EXPECT_LT(test::max_rel_err(y, ref, 1e-6, "qlora forward"), 1e-6);
}

// Projections of one input (decoding's q, k, v) through forward_group: each output equals its
// own forward; on the GPU in bf16 with NF4 bases and adapters, the bases in one launch of the
// few-row kernel (sums over another split of K: bf16's rounding), on the CPU one after the
// other (exactly).
TEST(Lora, ProjectionsOfOneInputInOneGroupMatchTheirOwnForwards) {
  std::vector<at::Device> devices{at::Device(at::kCPU)};
  if (at::hasCUDA()) devices.emplace_back(at::kCUDA, 0);
  for (const auto& dev : devices) {
    const auto dt = dev.is_cuda() ? at::kBFloat16 : at::kFloat;
    std::vector<LoraLinear> layers;
    for (int64_t out : {48, 16, 16}) {
      LoraLinear l;
      l.weight = (at::randn({out, 128}) * 0.1).to(dev);
      if (out == 48) l.bias = (at::randn({out}) * 0.1).to(dev, dt);
      l.quantize(true, "test.weight");
      l.lora_A = (at::randn({4, 128}) * 0.1).to(dev);
      l.lora_B = (at::randn({out, 4}) * 0.1).to(dev);
      l.scaling = 4.0;
      layers.push_back(std::move(l));
    }
    for (int64_t rows : {1, 3}) {
      const auto x = at::randn({rows, 128}).to(dev, dt);
      at::NoGradGuard ng;
      const auto got = LoraLinear::forward_group({&layers[0], &layers[1], &layers[2]}, x);
      ASSERT_EQ(got.size(), 3u);
      for (size_t i = 0; i < got.size(); ++i) {
        const auto want = layers[i].forward(x);
        if (dev.is_cpu()) EXPECT_TRUE(got[i].equal(want)) << "projection " << i;
        else EXPECT_LE(test::rel_err(got[i].to(at::kFloat), want.to(at::kFloat)), 1e-2) << "projection " << i << ", rows " << rows;
      }
    }
  }
}

TEST(Lora, GradientsMatchAutogradThroughTheDenseWeight) {
  at::manual_seed(2);
  auto l = make_layer(at::kFloat);
  auto x = at::randn({3, 7, 128}).requires_grad_(true);
  auto g = at::randn({3, 7, 48});
  (l.forward(x) * g).sum().backward();
  auto gx = x.grad().clone(), gA = l.lora_A.grad().clone(), gB = l.lora_B.grad().clone();

  auto x2 = x.detach().clone().requires_grad_(true);
  auto A2 = l.lora_A.detach().clone().requires_grad_(true), B2 = l.lora_B.detach().clone().requires_grad_(true);
  (reference_forward(l, x2, A2, B2) * g).sum().backward();
  test::max_rel_err(gx, x2.grad(), 1e-5, "grad x");
  test::max_rel_err(gA, A2.grad(), 1e-5, "grad A");
  test::max_rel_err(gB, B2.grad(), 1e-5, "grad B");
}

// down_proj of a SwiGLU MLP without the kept product: values and every gradient equal the
// plain composition forward(silu(g) * u), with and without dropout (the same masks drawn).
TEST(Lora, TheSwigluProjectionRecomputesItsInputAndMatchesThePlainOne) {
  for (double p : {0.0, 0.3}) {
    auto l = make_layer(at::kFloat);
    l.dropout = p;
    const auto g0 = at::randn({3, 7, 128}) * 2.0, u0 = at::randn({3, 7, 128}), dy = at::randn({3, 7, 48});
    auto run = [&](bool fused_path) {
      auto g = g0.clone().requires_grad_(true), u = u0.clone().requires_grad_(true);
      l.lora_A.mutable_grad() = at::Tensor();
      l.lora_B.mutable_grad() = at::Tensor();
      at::manual_seed(11);
      auto y = fused_path ? l.forward_swiglu(g, u) : l.forward(at::silu(g) * u);
      (y * dy).sum().backward();
      return std::vector<at::Tensor>{y.detach(), g.grad(), u.grad(), l.lora_A.grad().clone(), l.lora_B.grad().clone()};
    };
    const auto got = run(true), want = run(false);
    const char* names[] = {"y", "grad gate", "grad up", "grad A", "grad B"};
    for (size_t i = 0; i < got.size(); ++i)
      test::max_rel_err(got[i], want[i], 1e-5, std::string("dropout ") + std::to_string(p) + ": " + names[i]);
  }
}

// Projections of one RMSNorm's output without the kept output (q/k/v, gate/up): values and
// every gradient equal each projection's forward on the norm, with and without dropout (the
// same masks drawn), and with a projection that has no adapter.
// With every projection holding an adapter and no dropout, forward_normed stacks the adapters
// (lora_grouping: one product of n with [A_a; A_b; A_c] of ranks 4, 2 and 4, one input-gradient
// update, one product for the A gradients); with one projection bare or with dropout, each
// projection has its own products. Both equal the projections' own forwards on the normed
// input, and a forward without a graph (a checkpointed layer's first) gives the graph's
// values bit for bit.
TEST(Lora, NormedProjectionsRebuildTheNormAndMatchThePlainOnes) {
  for (bool bare : {true, false})
    for (double p : {0.0, 0.3}) {
      const std::string what =
          std::string(bare ? "c without an adapter" : "every projection with one") + ", dropout " + std::to_string(p);
      auto a = make_layer(at::kFloat), b = make_layer(at::kFloat, 2), c = make_layer(at::kFloat);
      if (bare) c.lora_A = at::Tensor(), c.lora_B = at::Tensor();
      a.dropout = b.dropout = p;
      std::vector<LoraLinear*> adapted{&a, &b};
      if (!bare) adapted.push_back(&c);
      const auto x0 = at::randn({3, 7, 128}) * 3.0, w = at::rand({128}) + 0.5;
      const auto dy = at::randn({3, 3, 7, 48});
      auto run = [&](bool normed) {
        auto x = x0.clone().requires_grad_(true);
        for (auto* l : adapted) l->lora_A.mutable_grad() = l->lora_B.mutable_grad() = at::Tensor();
        at::manual_seed(11);
        std::vector<at::Tensor> ys;
        if (normed) {
          ys = LoraLinear::forward_normed({&a, &b, &c}, x, w, 1e-6);
        } else {
          const auto n = fused::rms_norm(x, w, 1e-6);
          ys = {a.forward(n), b.forward(n), c.forward(n)};
        }
        auto y = at::stack(ys);
        (y * dy).sum().backward();
        std::vector<at::Tensor> out{y.detach(), x.grad()};
        for (auto* l : adapted) out.insert(out.end(), {l->lora_A.grad().clone(), l->lora_B.grad().clone()});
        return out;
      };
      const auto got = run(true), want = run(false);
      for (size_t i = 0; i < got.size(); ++i)
        test::max_rel_err(got[i], want[i], 1e-5,
                          what + ": " +
                              (i == 0   ? std::string("y")
                               : i == 1 ? std::string("grad x")
                                        : "adapter gradient " + std::to_string(i - 2)));
      // Without an input gradient (the first layer's input comes from the frozen embedding).
      for (auto* l : adapted) l->lora_A.mutable_grad() = l->lora_B.mutable_grad() = at::Tensor();
      at::manual_seed(11);
      (at::stack(LoraLinear::forward_normed({&a, &b, &c}, x0, w, 1e-6)) * dy).sum().backward();
      test::max_rel_err(a.lora_A.grad(), want[2], 1e-5, what + ": grad A (a) without an input gradient");
      test::max_rel_err(b.lora_B.grad(), want[5], 1e-5, what + ": grad B (b) without an input gradient");
      // Without a graph, dropping as a checkpointed layer's first forward does: the same bits.
      at::manual_seed(11);
      std::vector<at::Tensor> plain;
      {
        at::NoGradGuard no_grad;
        LoraLinear::DropoutWithoutGraph drop;
        plain = LoraLinear::forward_normed({&a, &b, &c}, x0, w, 1e-6);
      }
      for (size_t j = 0; j < plain.size(); ++j)
        EXPECT_TRUE(at::equal(plain[j], got[0][int64_t(j)])) << what << ": projection " << j << " without a graph";
    }
  auto l = make_layer(at::kFloat);
  EXPECT_THROW(LoraLinear::forward_normed({}, at::randn({2, 128}), at::ones({128}), 1e-6), Error);
  EXPECT_THROW(LoraLinear::forward_normed({&l}, at::randn({2, 128}), at::ones({64}), 1e-6), Error);
}

TEST(Lora, GradientsMatchFiniteDifferences) {
  at::manual_seed(3);
  auto l = make_layer(at::kDouble, 2);
  auto x = at::randn({2, 3, 128}, at::kDouble).requires_grad_(true);
  auto g = at::randn({2, 3, 48}, at::kDouble);
  auto loss = [&]() { return (l.forward(x) * g).sum(); };
  loss().backward();
  at::NoGradGuard ng;
  const double eps = 1e-6;
  auto probe = [&](at::Tensor p, const at::Tensor& grad, const char* what) {
    auto flat = p.view({-1});
    for (int64_t i : {int64_t(0), flat.numel() / 3, flat.numel() - 1}) {
      const double orig = flat[i].item<double>();
      flat[i] = orig + eps;
      const double up = loss().item<double>();
      flat[i] = orig - eps;
      const double down = loss().item<double>();
      flat[i] = orig;
      EXPECT_NEAR(grad.view({-1})[i].item<double>(), (up - down) / (2 * eps), 1e-6) << what << "[" << i << "]";
    }
  };
  probe(l.lora_A.detach(), l.lora_A.grad(), "A");
  probe(l.lora_B.detach(), l.lora_B.grad(), "B");
  probe(x.detach(), x.grad(), "x");
}

#ifdef R1DIST_WITH_CUDA
TEST(Lora, BackwardKeepsNoDequantisedWeight) {
  // After the forward, what the graph holds (x, the rank-r intermediate, adapters) stays far
  // below one dense bf16 copy of W (128 MiB here); the peak during forward is one such copy.
  const at::Device dev(at::kCUDA, 0);
  LoraLinear l;
  l.weight = at::randn({8192, 8192}, at::TensorOptions().device(dev).dtype(at::kBFloat16));
  l.quantize(true, "big");
  l.lora_A = at::zeros({16, 8192}, dev).requires_grad_(true);
  l.lora_B = at::zeros({8192, 16}, dev).requires_grad_(true);
  l.scaling = 1;
  auto x = at::randn({1, 16, 8192}, at::TensorOptions().device(dev).dtype(at::kBFloat16)).requires_grad_(true);
  using c10::cuda::CUDACachingAllocator::getDeviceStats;
  l.forward(x).sum().backward();  // warm-up: cuBLAS keeps a 32 MiB workspace from its first use
  x.mutable_grad() = at::Tensor();
  at::cuda::device_synchronize();
  const int64_t before = getDeviceStats(0).allocated_bytes[0].current;
  auto y = l.forward(x);
  at::cuda::device_synchronize();
  const int64_t held = getDeviceStats(0).allocated_bytes[0].current - before;
  EXPECT_LT(held, 8 << 20) << "bytes held after forward: " << held;
  y.sum().backward();
  EXPECT_EQ(x.grad().sizes(), x.sizes());
}
#endif

TEST(Lora, FlatBufferHoldsEveryAdapterAndItsGradient) {
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 300;
  Qwen2Model m(cfg, at::kFloat, at::Device(at::kCPU));
  for (auto& [name, t] : m.named_weights()) t->normal_(0, 0.05);
  m.attach_lora(LoraSpec{8, 16, 0.0, false}, projection_names(), 3407);
  EXPECT_EQ(m.lora().flat().numel(), lora_param_count(cfg, 8, projection_names()));
  // params are views of the flat buffer
  m.lora().flat().data_ptr<float>()[0] = 123.0f;
  EXPECT_EQ(m.lora().named_parameters()[0].second.view({-1})[0].item<float>(), 123.0f);
  // make B non-zero so every gradient is non-trivial
  {
    at::NoGradGuard ng;
    m.lora().flat().normal_(0, 0.02);
  }
  auto ids = at::randint(0, 300, {2, 9});
  causal_lm_loss(m.forward(ids), ids).backward();
  auto flat_grad = m.lora().flat_grad();
  std::vector<at::Tensor> parts;
  for (auto& [name, p] : m.lora().named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << name;
    parts.push_back(p.grad().reshape({-1}));
  }
  EXPECT_TRUE(at::cat(parts).equal(flat_grad));
  // Switched off, the model is the base model again.
  at::NoGradGuard ng;
  m.lora().set_enabled(false);
  auto off = m.forward(ids);
  Qwen2Model base(cfg, at::kFloat, at::Device(at::kCPU));
  auto mw = m.named_weights(), bw = base.named_weights();
  for (size_t i = 0; i < mw.size(); ++i) bw[i].second->copy_(*mw[i].second);
  EXPECT_TRUE(off.equal(base.forward(ids)));
}

// Below fp32 the adapters are used as one cast of the flat buffer, made again after every
// in-place write to it (the optimizer's update, a write through a view as a checkpoint's load
// does): the values equal casting A and B at each use, never a stale cast.
TEST(Lora, TheAdaptersCastFollowsEveryWriteToTheFlatBuffer) {
  const auto bf16 = at::kBFloat16;
  LoraLinear gate, up;
  for (LoraLinear* l : {&gate, &up}) {
    l->weight = (at::randn({48, 128}) * 0.1).to(bf16);
    l->bias = (at::randn({48}) * 0.1).to(bf16);
  }
  auto adapters = LoraAdapters::attach({{"gate", &gate}, {"up", &up}}, [](const std::string&) { return LoraSpec{4, 16}; },
                                       7, at::Device(at::kCPU));
  at::NoGradGuard ng;
  adapters.flat().normal_(0, 0.1);  // a non-zero B
  ASSERT_TRUE(gate.adapter_cast);
  // Every A and B of one model is a view of one cast.
  EXPECT_TRUE(gate.adapter_in(gate.lora_A, bf16).storage().is_alias_of(up.adapter_in(up.lora_B, bf16).storage()));
  const auto x = at::randn({3, 5, 128}).to(bf16);
  auto cast_at_use = [&](const LoraLinear& l) {
    LoraLinear plain = l;
    plain.adapter_cast = nullptr;
    return plain.forward(x);
  };
  auto before = up.forward(x);
  EXPECT_TRUE(before.equal(cast_at_use(up)));
  // The optimizer's update.
  auto flat = adapters.flat();
  AdamW opt(flat, AdamWConfig{});
  opt.step(flat, at::randn_like(flat), 1e-2);
  auto after = up.forward(x);
  EXPECT_FALSE(after.equal(before));
  EXPECT_TRUE(after.equal(cast_at_use(up)));
  // A write through a parameter's view (as loading a checkpoint writes).
  for (auto& [name, p] : adapters.named_parameters())
    if (name.find("up.lora_B") != std::string::npos) p.copy_(at::randn_like(p));
  auto loaded = up.forward(x);
  EXPECT_FALSE(loaded.equal(after));
  EXPECT_TRUE(loaded.equal(cast_at_use(up)));
  EXPECT_TRUE(gate.forward(x).equal(cast_at_use(gate)));
}

TEST(Lora, PeftInitIsKaimingUniformAndZeroB) {
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 300;
  Qwen2Model m(cfg, at::kFloat, at::Device(at::kCPU));
  m.attach_lora(LoraSpec{16, 16, 0.0, false}, {"q_proj", "down_proj"}, 1);
  for (auto& [name, p] : m.lora().named_parameters()) {
    if (name.find("lora_B") != std::string::npos) {
      EXPECT_EQ(p.abs().sum().item<double>(), 0.0) << name;
    } else {
      const double bound = 1.0 / std::sqrt(double(p.size(1)));
      EXPECT_LE(p.abs().max().item<double>(), bound) << name;
      EXPECT_GT(p.abs().max().item<double>(), 0.9 * bound) << name;
    }
  }
  EXPECT_EQ(m.lora().refs().size(), size_t(2 * cfg.num_hidden_layers));
}

}  // namespace
}  // namespace r1dist
