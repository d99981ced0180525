// The chunked lm_head + cross-entropy (model/lm_loss.h) against the plain path
// (causal_lm_loss_sum over the full logits): the same loss and the same gradient of the
// hidden states for every chunk size, ignored labels included; and a whole model's adapter
// gradients through it. fp32 on the CPU; bf16 on a GPU with a stated tolerance.
#include <gtest/gtest.h>

#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

// (loss, d loss / d hidden) by both paths for one input.
void compare(const at::Device& dev, at::ScalarType dt, double tol, int64_t v = 97) {
  at::manual_seed(11);
  const int64_t b = 3, t = 29, h = 24;
  const auto opts = at::TensorOptions().dtype(dt).device(dev);
  const auto weight = at::randn({v, h}, opts);
  auto labels = at::randint(0, v, {b, t}, at::TensorOptions().dtype(at::kLong).device(dev));
  labels.slice(1, 0, 5).fill_(-100);               // a masked prompt
  labels.select(0, 2).slice(0, 20).fill_(-100);    // right padding of the last row
  const auto h0 = at::randn({b, t, h}, opts);
  auto full_h = h0.clone().requires_grad_(true);
  const auto full = causal_lm_loss_sum(at::linear(full_h, weight), labels);
  full.backward();
  for (int64_t chunk : {1, 5, 28, 84, 1000}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    auto hc = h0.clone().requires_grad_(true);
    const auto loss = chunked_lm_loss_sum(hc, weight, labels, chunk);
    loss.backward();
    EXPECT_LE(test::rel_err(loss, full), tol) << loss.item<double>() << " vs " << full.item<double>();
    EXPECT_LE(test::rel_err(hc.grad(), full_h.grad()), tol);
    EXPECT_TRUE(hc.grad().select(1, t - 1).eq(0).all().item<bool>()) << "the last position predicts nothing";
  }
}

TEST(LmLoss, ChunkedEqualsFullLogitsOnTheCpu) { compare(at::Device(at::kCPU), at::kFloat, 1e-6); }

// On the CPU a chunk of a pass over the vocabulary is capped at 32 MiB of fp32 values; a GPU
// takes the chunk it is given.
TEST(LmLoss, TheCpuChunkStaysWithin32MiB) {
  EXPECT_EQ(vocab_chunk_tokens(1024, 151936, at::Device(at::kCPU)), 55);
  EXPECT_EQ(vocab_chunk_tokens(1024, 97, at::Device(at::kCPU)), 1024);
  EXPECT_EQ(vocab_chunk_tokens(1024, int64_t(1) << 24, at::Device(at::kCPU)), 1);
  EXPECT_EQ(vocab_chunk_tokens(1024, 151936, at::Device(at::kCUDA, 0)), 1024);
}

TEST(LmLoss, ChunkedEqualsFullLogitsOnTheGpuInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  // Both paths compute the same bf16 logits and the same fp32 softmax; only sums are ordered
  // differently, and the gradient is rounded to bf16 in both. The loss kernels
  // (fused::logsumexp_and_target, softmax_grad_) take 16-byte vectors for a vocabulary of a
  // multiple of 8, single elements for 97.
  for (int64_t v : {97, 4096}) {
    SCOPED_TRACE("vocabulary " + std::to_string(v));
    compare(at::Device(at::kCUDA, 0), at::kBFloat16, 1e-2, v);
    compare(at::Device(at::kCUDA, 0), at::kFloat, 1e-5, v);
  }
}

TEST(LmLoss, ModelAdapterGradientsThroughTheChunkedLossEqualTheFullOnes) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  LoraSpec spec{8, 16, 0.0, false};
  model.attach_lora(spec, {"q_proj", "v_proj", "down_proj"}, 3);
  {
    at::NoGradGuard ng;
    model.lora().flat().normal_(0, 0.05);  // B = 0 would leave A without a gradient
  }
  const auto ids = at::randint(0, 300, {2, 17}, at::kLong);
  auto labels = ids.clone();
  labels.select(0, 1).slice(0, 12).fill_(-100);
  auto grads = [&](bool chunked) {
    model.lora().flat_grad().zero_();
    const auto h = model.hidden_states_train(ids, true);
    const auto loss = chunked ? chunked_lm_loss_sum(h, model.lm_head_weight(), labels, 7)
                              : causal_lm_loss_sum(model.lm_head(h), labels);
    loss.backward();
    return std::make_pair(loss.detach().clone(), model.lora().flat_grad().clone());
  };
  const auto [l_full, g_full] = grads(false);
  const auto [l_chunk, g_chunk] = grads(true);
  EXPECT_LE(test::rel_err(l_chunk, l_full), 1e-6);
  EXPECT_GT(g_full.abs().max().item<double>(), 0.0);
  EXPECT_LE(test::rel_err(g_chunk, g_full), 1e-5);
}

TEST(LmLoss, AFrozenWeightAndShapesAreChecked) {
  const auto w = at::randn({5, 4}).requires_grad_(true);
  EXPECT_THROW(chunked_lm_loss_sum(at::randn({1, 3, 4}), w, at::zeros({1, 3}, at::kLong)), Error);
  EXPECT_THROW(chunked_lm_loss_sum(at::randn({1, 3, 4}), w.detach(), at::zeros({1, 2}, at::kLong)), Error);
  EXPECT_EQ(chunked_lm_loss_sum(at::randn({1, 1, 4}), w.detach(), at::zeros({1, 1}, at::kLong)).item<double>(), 0.0);
}

}  // namespace
}  // namespace r1dist
