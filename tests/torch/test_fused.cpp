// tensor/fused_ops.h against the plain ATen forms through autograd: the forward values and the
// input gradients for a random upstream gradient. On the CPU the fused functions run their
// ATen formulas in fp32, which checks the hand-written backward passes; where CUDA is present
// the kernels run in fp32 (tight) and bf16 (against the fp32 plain form, bf16's rounding
// allowed), on shapes that take the 16-byte vector path and shapes that do not. Then whole
// training steps of the tiny models, fused against plain, on the CPU and the GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

struct Case {
  at::Device dev;
  at::ScalarType dt;
  double tol;
  std::string name;
};

std::vector<Case> cases() {
  std::vector<Case> c{{at::Device(at::kCPU), at::kFloat, 1e-5, "cpu fp32"}};
  if (at::hasCUDA()) {
    c.push_back({at::Device(at::kCUDA, 0), at::kFloat, 1e-5, "cuda fp32"});
    c.push_back({at::Device(at::kCUDA, 0), at::kBFloat16, 2e-2, "cuda bf16"});
  }
  return c;
}

at::Tensor plain_rms(const at::Tensor& x, const at::Tensor& w, double eps) {
  const auto xf = x.to(at::kFloat);
  return w * (xf * at::rsqrt(xf.pow(2).mean({-1}, true) + eps)).to(x.scalar_type());
}

at::Tensor plain_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t h = x.size(-1) / 2;
  const auto rot = at::cat({-x.slice(-1, h), x.slice(-1, 0, h)}, -1);
  return x * cos.unsqueeze(2) + rot * sin.unsqueeze(2);
}

at::Tensor plain_swiglu(const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; }

using Fn = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Output and the gradients of the first `n_grad` inputs for upstream gradient dy.
std::vector<at::Tensor> run(const Fn& f, std::vector<at::Tensor> in, size_t n_grad, const at::Tensor& dy) {
  for (size_t i = 0; i < n_grad; ++i) in[i] = in[i].detach().clone().requires_grad_(true);
  auto y = f(in);
  y.backward(dy.to(y.scalar_type()));
  std::vector<at::Tensor> out{y.detach().to(at::kFloat)};
  for (size_t i = 0; i < n_grad; ++i) out.push_back(in[i].grad().to(at::kFloat));
  return out;
}

// The fused function in the case's dtype against the plain one in fp32 on the same inputs.
void compare(const Case& c, const std::string& what, const Fn& fused_fn, const Fn& plain_fn,
             const std::vector<at::Tensor>& inputs_f32, size_t n_grad) {
  const auto dy = at::randn(fused_fn(inputs_f32).sizes(), at::TensorOptions().dtype(at::kFloat).device(c.dev));
  std::vector<at::Tensor> in;
  for (const auto& t : inputs_f32) in.push_back(t.to(c.dt));
  std::vector<at::Tensor> in_ref;  // the case's values, widened: both sides see the same inputs
  for (const auto& t : in) in_ref.push_back(t.to(at::kFloat));
  const auto got = run(fused_fn, in, n_grad, dy), want = run(plain_fn, in_ref, n_grad, dy);
  for (size_t i = 0; i < got.size(); ++i) {
    const std::string part = what + " (" + c.name + ") " + (i == 0 ? "output" : "gradient " + std::to_string(i));
    const double e = test::max_rel_err(got[i].cpu(), want[i].cpu(), c.tol, part);
    std::printf("%s: max rel err %.3g\n", part.c_str(), e);
  }
}

TEST(Fused, RmsNormMatchesThePlainFormAndItsGradient) {
  for (const auto& c : cases()) {
    auto opts = at::TensorOptions().dtype(at::kFloat).device(c.dev);
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{3, 17, 64}, {5, 48}, {7, 43}, {2, 4, 1536}}) {
      const auto gen_x = at::randn(shape, opts) * 3.0;
      const auto w = at::rand({shape.back()}, opts) + 0.5;
      const Fn fused_fn = [&](const std::vector<at::Tensor>& in) { return fused::rms_norm(in[0], w.to(in[0].scalar_type()), 1e-6); };
      const Fn plain_fn = [&](const std::vector<at::Tensor>& in) { return plain_rms(in[0], w.to(in[0].scalar_type()), 1e-6); };
      compare(c, "rms_norm h=" + std::to_string(shape.back()), fused_fn, plain_fn, {gen_x}, 1);
    }
  }
}

TEST(Fused, RopeMatchesThePlainFormAndItsGradient) {
  for (const auto& c : cases()) {
    auto opts = at::TensorOptions().dtype(at::kFloat).device(c.dev);
    // (B, T, heads, D, table rows): D = 128 and 16 take the vector path, 8 and 6 do not; table
    // rows 1 (shared positions) or B (left padding, packed rows).
    for (const auto& s : std::vector<std::vector<int64_t>>{{2, 9, 4, 128, 1}, {3, 5, 2, 16, 3}, {2, 7, 6, 8, 1},
                                                            {1, 4, 3, 6, 1}}) {
      const auto x = at::randn({s[0], s[1], s[2], s[3]}, opts);
      const auto pos = at::randint(0, 500, {s[4], s[1]}, at::TensorOptions().dtype(at::kLong).device(c.dev));
      auto [cos, sin] = rope_tables(s[3], 10000.0, pos, at::kFloat);  // (rows, T, D)
      const Fn fused_fn = [&](const std::vector<at::Tensor>& in) {
        return fused::rope(in[0], cos.to(in[0].scalar_type()), sin.to(in[0].scalar_type()));
      };
      const Fn plain_fn = [&](const std::vector<at::Tensor>& in) { return plain_rope(in[0], cos, sin); };
      compare(c, "rope D=" + std::to_string(s[3]) + " rows=" + std::to_string(s[4]), fused_fn, plain_fn, {x}, 1);
    }
  }
}

TEST(Fused, SwigluMatchesThePlainFormAndItsGradients) {
  for (const auto& c : cases()) {
    auto opts = at::TensorOptions().dtype(at::kFloat).device(c.dev);
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{2, 33, 160}, {5, 7}, {4096}}) {
      const auto g = at::randn(shape, opts) * 4.0, u = at::randn(shape, opts);
      const Fn fused_fn = [](const std::vector<at::Tensor>& in) { return fused::swiglu(in[0], in[1]); };
      const Fn plain_fn = [](const std::vector<at::Tensor>& in) { return plain_swiglu(in[0], in[1]); };
      compare(c, "swiglu n=" + std::to_string(g.numel()), fused_fn, plain_fn, {g, u}, 2);
    }
  }
}

TEST(Fused, BadOperandsAreRefused) {
  const auto x = at::randn({2, 3, 8});
  EXPECT_THROW(fused::rms_norm(x, at::ones({7}), 1e-6), Error);
  EXPECT_THROW(fused::rms_norm(x, at::ones({8}).requires_grad_(true), 1e-6), Error);
  EXPECT_THROW(fused::rope(at::randn({2, 3, 4, 8}), at::ones({3, 3, 8}), at::ones({3, 3, 8})), Error);
  EXPECT_THROW(fused::swiglu(at::randn({4}), at::randn({5})), Error);
}

struct StepResult {
  double loss;
  at::Tensor grad;
};

// How the backward gets its activations: kept, whole layers recomputed, MLPs recomputed
// (LoraLinear::forward_mlp).
enum class Recompute { none, layers, mlp };

// One micro-batch of a tiny model with adapters on all seven projections (seeded values),
// forward under `recompute` in every layer, the chunked loss, backward.
StepResult train_step(const std::string& fixture, const at::Device& dev, at::ScalarType dt, bool fused_on,
                      Recompute recompute, QuantMode quant) {
  LoadOptions lo;
  lo.quant = quant;
  auto model = Qwen2Model::load(test::fixture(fixture), dt, dev, lo);
  model.set_fused(fused_on);
  model.attach_lora(LoraSpec{8, 16, 0.0, false}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}, 3);
  {
    at::NoGradGuard ng;
    auto flat = model.lora().flat();
    const auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    flat.copy_(at::randn(flat.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).mul_(0.05).to(flat.device()));
  }
  const int64_t layers = model.config().num_hidden_layers;
  const RecomputePlan plan{recompute == Recompute::layers ? layers : 0, recompute == Recompute::mlp ? layers : 0};
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const auto ids = at::randint(0, model.config().vocab_size, {2, 40}, gen, at::TensorOptions().dtype(at::kLong));
  auto labels = ids.clone();
  labels.select(0, 1).slice(0, 0, 9).fill_(-100);
  const int64_t count = labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  const auto loss = chunked_lm_loss_sum(model.hidden_states_train(ids.to(dev), plan), model.lm_head_weight(),
                                        labels.to(dev), 16) / double(count);
  loss.backward();
  return {loss.item<double>(), model.lora().flat_grad().to(at::kFloat).cpu().clone()};
}

void expect_step_equal(const std::string& fixture, const at::Device& dev, at::ScalarType dt, QuantMode quant,
                       double loss_tol, double grad_tol) {
  // The fused layer kept, recomputed, and with its MLP recomputed, each against the plain
  // layer under the same plan (the plain one kept for the MLP plan).
  for (Recompute r : {Recompute::none, Recompute::layers, Recompute::mlp}) {
    const char* name = r == Recompute::none ? "kept" : r == Recompute::layers ? "layers recomputed" : "MLPs recomputed";
    const auto plain = train_step(fixture, dev, dt, false, r == Recompute::mlp ? Recompute::none : r, quant);
    const auto fused = train_step(fixture, dev, dt, true, r, quant);
    const double el = std::abs(fused.loss - plain.loss) / std::abs(plain.loss), eg = test::rel_err(fused.grad, plain.grad);
    std::printf("%s %s %s %s: fused vs plain loss rel err %.3g, adapter grad max rel err %.3g\n", fixture.c_str(),
                dev.str().c_str(), dt == at::kFloat ? "fp32" : "bf16", name, el, eg);
    EXPECT_LE(el, loss_tol) << fixture << " " << name;
    EXPECT_LE(eg, grad_tol) << fixture << " " << name;
  }
}

// The loss kernels against their ATen formulas (the CPU path of the same functions) on the
// same values: a vocabulary of the R1 models' size (16-byte vectors) and an odd one (single
// elements), a -inf logit, ignored rows (scale 0), in fp32, bf16 and fp16.
TEST(Fused, CrossEntropyKernelsMatchTheAtenFormulas) {
  if (!at::hasCUDA() || !fused::kernels_available(at::Device(at::kCUDA, 0)))
    GTEST_SKIP() << "no CUDA kernels in this build/machine";
  const at::Device gpu(at::kCUDA, 0);
  for (int64_t v : {151936, 1001})
    for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      SCOPED_TRACE("V " + std::to_string(v) + ", " + std::string(c10::toString(dt)));
      const auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
      const int64_t rows = 6;
      auto logits = (at::randn({rows, v}, gen, at::TensorOptions().dtype(at::kFloat)) * 4).to(dt);
      logits[1][3] = -INFINITY;
      const auto target = at::randint(0, v, {rows}, gen, at::TensorOptions().dtype(at::kLong));
      const auto scale = at::tensor({0.5f, 0.f, 1.f, 2.f, 0.25f, 1.f});
      // (fp32 logits are the CPU's scratch: it gets a copy)
      const auto [lse_cpu, picked_cpu] = fused::logsumexp_and_target(logits.clone(), target);
      const auto [lse, picked] = fused::logsumexp_and_target(logits.to(gpu), target.to(gpu));
      EXPECT_LE(test::rel_err(lse.cpu(), lse_cpu), 1e-6);
      EXPECT_TRUE(picked.cpu().equal(picked_cpu));
      auto grad_cpu = logits.clone();
      fused::softmax_grad_(grad_cpu, lse_cpu, target, scale);
      auto grad = logits.to(gpu);
      fused::softmax_grad_(grad, lse.to(gpu).contiguous(), target.to(gpu), scale.to(gpu));
      // One rounding to the dtype in both; expf may differ in the last fp32 bit.
      EXPECT_LE(test::rel_err(grad.cpu().to(at::kFloat), grad_cpu.to(at::kFloat)), dt == at::kFloat ? 1e-5 : 1e-2);
      EXPECT_TRUE(grad.select(0, 1).eq(0).all().item<bool>()) << "an ignored row (scale 0) has no gradient";
      EXPECT_LT(grad.cpu()[2][target[2].item<int64_t>()].item<float>(), 0.f) << "the target's gradient is p - 1 < 0";
    }
}

// Decoding's residual add and norm: the values of the add, then the norm, bit for bit (the sum
// rounded to the dtype, the norm's reduction in the same order), vector and element paths.
TEST(Fused, AddRmsNormIsTheAddThenTheNorm) {
  for (const auto& c : cases())
    for (int64_t h : {64, 37}) {
      SCOPED_TRACE(c.name + ", hidden " + std::to_string(h));
      const auto opts = at::TensorOptions().dtype(c.dt).device(c.dev);
      const auto x = at::randn({3, 2, h}, opts), delta = at::randn({3, 2, h}, opts), w = at::rand({h}, opts) + 0.5;
      at::NoGradGuard ng;
      const auto [sum, normed] = fused::add_rms_norm(x, delta, w, 1e-6);
      const auto want_sum = x + delta;
      EXPECT_TRUE(sum.equal(want_sum));
      EXPECT_TRUE(normed.equal(fused::rms_norm(want_sum, w, 1e-6)));
    }
}

// Decoding's RoPE and cache write (one kernel on CUDA) against fused::rope and index_copy_
// apart, bit for bit: q returned rotated, k rotated and v into the column, the rest of the caches
// untouched; q, k and v as slices of one projection output (not contiguous), a table shared by
// the rows or one per row, a head size whose half is not a whole 16-byte vector (the scalar
// form); fp32 on the CPU, fp32, bf16 and fp16 on CUDA. q also matches the plain formula.
TEST(Fused, RopeIntoCacheIsRopeThenTheCacheWrite) {
  auto all = cases();
  if (at::hasCUDA()) all.push_back({at::Device(at::kCUDA, 0), at::kHalf, 3e-3, "cuda fp16"});
  for (const auto& c : all)
    for (int64_t d : {128, 12})
      for (int64_t bc : {1, 3}) {
        SCOPED_TRACE(c.name + ", d " + std::to_string(d) + ", table rows " + std::to_string(bc));
        const int64_t b = 3, hq = 4, hkv = 2, capacity = 9;
        const auto opts = at::TensorOptions().dtype(c.dt).device(c.dev);
        const auto qkv = at::randn({b, 1, (hq + 2 * hkv) * d}, opts);
        const auto q = qkv.narrow(2, 0, hq * d), k = qkv.narrow(2, hq * d, hkv * d),
                   v = qkv.narrow(2, (hq + hkv) * d, hkv * d);
        const auto cos = at::randn({bc, 1, 1, d}, opts), sin = at::randn({bc, 1, 1, d}, opts);
        auto kc = at::randn({b, hkv, capacity, d}, opts), vc = at::randn({b, hkv, capacity, d}, opts);
        auto want_k = kc.clone(), want_v = vc.clone();
        const auto column = at::full({1}, int64_t(5), opts.dtype(at::kLong));
        at::NoGradGuard ng;
        const auto got_q = fused::rope_into_cache(q, k, v, cos, sin, kc, vc, column);
        const auto want_q = fused::rope(q.contiguous().view({b, 1, hq, d}), cos.view({bc, 1, d}), sin.view({bc, 1, d}));
        want_k.index_copy_(2, column,
                           fused::rope(k.contiguous().view({b, 1, hkv, d}), cos.view({bc, 1, d}), sin.view({bc, 1, d}))
                               .transpose(1, 2));
        want_v.index_copy_(2, column, v.reshape({b, 1, hkv, d}).transpose(1, 2));
        ASSERT_EQ(got_q.sizes(), (std::vector<int64_t>{b, hq, d}));
        EXPECT_TRUE(got_q.equal(want_q.view({b, hq, d})));
        EXPECT_TRUE(kc.equal(want_k));
        EXPECT_TRUE(vc.equal(want_v));
        const auto plain = plain_rope(q.to(at::kFloat).view({b, 1, hq, d}), cos.to(at::kFloat).view({bc, 1, d}),
                                      sin.to(at::kFloat).view({bc, 1, d}));
        EXPECT_LE((got_q.to(at::kFloat) - plain.view({b, hq, d})).abs().max().item<double>(),
                  c.tol * (1.0 + plain.abs().max().item<double>()));
      }
  // Refused: k of other heads than the caches, a table of neither 1 nor B rows, a column
  // that is not int64, a cache that is not contiguous.
  const auto x = at::randn({2, 1, 8}), one = at::ones({8}), col = at::ones({1}, at::kLong);
  auto kc = at::zeros({2, 1, 4, 8}), vc = at::zeros({2, 1, 4, 8});
  EXPECT_NO_THROW(fused::rope_into_cache(x, x, x, one, one, kc, vc, col));
  const auto k2 = at::randn({2, 1, 16});
  EXPECT_THROW(fused::rope_into_cache(x, k2, k2, one, one, kc, vc, col), Error);
  EXPECT_THROW(fused::rope_into_cache(x, x, x, at::ones({24}), at::ones({24}), kc, vc, col), Error);
  EXPECT_THROW(fused::rope_into_cache(x, x, x, one, one, kc, vc, at::ones({1})), Error);
  auto kt = at::zeros({2, 1, 8, 4}).transpose(2, 3);
  EXPECT_THROW(fused::rope_into_cache(x, x, x, one, one, kt, vc, col), Error);
}

// Decoding attention (the GPU kernel) against scaled dot-product attention under the same
// mask in fp32: rows that share a key head 1 to 16 (and 17, beyond the kernel: the fallback),
// head sizes 64, 128 and 256, spans within one 32-column chunk and over several, split the
// default way, in one block per head (every chunk through the online softmax) and in three
// (merged); columns masked out (left padding, a hole, a whole chunk), the cache wider than the
// span; fp32, bf16, fp16.
TEST(Fused, DecodeAttentionMatchesMaskedAttention) {
  if (!at::hasCUDA() || !fused::kernels_available(at::Device(at::kCUDA, 0)))
    GTEST_SKIP() << "no CUDA kernels in this build/machine";
  const at::Device gpu(at::kCUDA, 0);
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf})
    for (int64_t rows : {1, 5, 7, 16, 17})
      for (int64_t d : {64, 128, 256})
        for (int64_t span : {1, 97, 128, 300, 512})
          for (int64_t splits : {0, 1, 3}) {
            SCOPED_TRACE(std::string(c10::toString(dt)) + ", rows " + std::to_string(rows) + ", d " +
                         std::to_string(d) + ", span " + std::to_string(span) + ", splits " + std::to_string(splits));
            const int64_t b = 3, heads = 2, capacity = span + 40;
            const auto q = at::randn({b, heads, rows, d}, gen, f32).to(gpu, dt);
            const auto kc = at::randn({b, heads, capacity, d}, gen, f32).to(gpu, dt);
            const auto vc = at::randn({b, heads, capacity, d}, gen, f32).to(gpu, dt);
            auto allowed = at::ones({b, capacity}, f32.dtype(at::kBool));
            if (span > 4) {
              allowed[1].slice(0, 0, 3).fill_(false);  // left padding
              allowed[2].slice(0, span / 2, span / 2 + 2).fill_(false);
            }
            if (span > 100) allowed[0].slice(0, 32, 64).fill_(false);  // a whole chunk
            allowed = allowed.to(gpu);
            const auto k = kc.narrow(2, 0, span), v = vc.narrow(2, 0, span), mask = allowed.narrow(1, 0, span);
            const double scale = 1.0 / std::sqrt(double(d));
            at::NoGradGuard ng;
            const auto got = fused::decode_attention(q, k, v, mask, scale, splits);
            ASSERT_EQ(got.sizes(), q.sizes());
            ASSERT_EQ(got.scalar_type(), dt);
            const auto want = compat::masked_attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat),
                                                       mask.view({b, 1, 1, span}), scale);
            EXPECT_LE(test::rel_err(got.to(at::kFloat).cpu(), want.cpu()), dt == at::kFloat ? 1e-5 : 1e-2);
          }
}

TEST(Fused, ATrainingStepGivesThePlainLossAndAdapterGradientsOnTheCpu) {
  for (const char* fixture : {"qwen2_a", "qwen2_b"}) expect_step_equal(fixture, at::Device(at::kCPU), at::kFloat, QuantMode::none, 1e-5, 1e-5);
}

TEST(Fused, ATrainingStepGivesThePlainLossAndAdapterGradientsOnTheGpu) {
  if (!at::hasCUDA() || !fused::kernels_available(at::Device(at::kCUDA, 0)))
    GTEST_SKIP() << "no CUDA kernels in this build/machine";
  const at::Device gpu(at::kCUDA, 0);
  for (const char* fixture : {"qwen2_a", "qwen2_b"}) {
    expect_step_equal(fixture, gpu, at::kFloat, QuantMode::none, 1e-5, 1e-4);
    // bf16 rounds after every plain op and once per fused kernel: the two differ by bf16 noise.
    expect_step_equal(fixture, gpu, at::kBFloat16, QuantMode::nf4, 1e-2, 5e-2);
  }
}

}  // namespace
}  // namespace r1dist
