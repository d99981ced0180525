// data.packing through the model: a packed global batch gives the loss and the adapter
// gradients of the same rows padded (fp32 CPU, max rel err <= 1e-5; bf16 on a GPU, where
// attention runs in libtorch's variable-length flash kernel, with a stated tolerance), and
// no token of a packed sequence sees another row (bitwise on the CPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "r1dist/data/dataset.h"
#include "r1dist/data/packing.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/token_batch.h"
#include "support/models.h"
#include "support/temp.h"
#include "support/tensors.h"
#include "support/tokenizer.h"

namespace r1dist {
namespace {

// data.max_seq_len (= the packed sequence's capacity) per overlong policy: the bundled rows
// are 250-450 tokens, so at 160 every one is truncated to exactly the limit (and fills a
// sequence alone), and at 360 some are dropped and the rest are shorter than the limit.
int64_t capacity_for(OverlongPolicy policy) { return policy == OverlongPolicy::truncate ? 160 : 360; }

// Real rows of the bundled sample, tokenized by the R1 tokenizer under an overlong policy,
// plus prefixes of them of assorted shorter lengths, ids folded into the tiny model's
// vocabulary.
std::vector<Example> rows_under(OverlongPolicy policy, int64_t vocab) {
  DataConfig cfg;
  cfg.path = test::source_dir() + "/data/sample_zh.jsonl";
  cfg.n_samples = 10;
  cfg.max_seq_len = capacity_for(policy);
  cfg.overlong = policy;
  cfg.threads = 1;
  const auto data = build_dataset(cfg, test::r1_tokenizer(), 1);
  if (policy == OverlongPolicy::truncate) EXPECT_EQ(data.truncated, 10);
  if (policy == OverlongPolicy::drop) EXPECT_GT(data.dropped, 0);
  auto rows = data.train;
  const std::vector<int64_t> cuts{7, 33, 90, 127, 2, 64, 151, 19, 45};
  const auto first = rows.empty() ? Example{} : rows.front();
  auto base = test::r1_tokenizer().encode("病人发热三天，咳嗽，胸痛。最可能的诊断是什么？请逐步推理后给出答案。");
  for (size_t i = 0; i < cuts.size(); ++i) {
    Example x;
    for (int64_t j = 0; j < cuts[i]; ++j) {
      x.ids.push_back(first.ids.empty() ? base[size_t(j) % base.size()] : first.ids[size_t(j) % first.ids.size()]);
      x.labels.push_back(j < 3 + int64_t(i) ? -100 : x.ids.back());
    }
    rows.push_back(x);
  }
  for (auto& x : rows) {
    for (auto& id : x.ids) id = int32_t(id % vocab);
    for (auto& l : x.labels)
      if (l != -100) l = int32_t(l % vocab);
  }
  return rows;
}

struct LossAndGrad {
  at::Tensor loss, grad;
};

// The summed loss over `rows` / their loss-token count, backward, the flat adapter gradient.
LossAndGrad step(Qwen2Model& model, const std::vector<Example>& rows, int64_t capacity, bool packed,
                 bool checkpoint) {
  model.lora().flat_grad().zero_();
  int64_t count = 0;
  for (const auto& x : rows) count += loss_tokens(x);
  std::vector<int64_t> all(rows.size());
  std::iota(all.begin(), all.end(), 0);
  const auto lengths = example_lengths(rows);
  const auto dev = model.device();
  at::Tensor total = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(dev));
  auto run = [&](const TokenBatch& b, const PackedRows* layout) {
    const auto loss = chunked_lm_loss_sum(model.hidden_states_train(b.ids, checkpoint, layout), model.lm_head_weight(),
                                          b.labels, 64) /
                      double(count);
    loss.backward();
    total += loss.detach();
  };
  if (packed) {
    for (const auto& mb : pack_rank_share(all, lengths, capacity, 0, 1, 2)) {  // two sequences per micro-batch
      std::vector<const Example*> ptrs;
      for (const auto& s : mb)
        for (int64_t i : s.rows) ptrs.push_back(&rows[size_t(i)]);
      const auto c = collate_packed(ptrs);
      const auto layout = packed_rows(c.row_lengths, dev, model.dtype());
      run(to_device(c, dev), &layout);
    }
  } else {
    for (size_t i = 0; i < rows.size(); i += 3) {  // padded micro-batches of 3 rows
      std::vector<const Example*> ptrs;
      for (size_t j = i; j < std::min(rows.size(), i + 3); ++j) ptrs.push_back(&rows[j]);
      run(to_device(collate(ptrs, 0), dev), nullptr);
    }
  }
  return {total.cpu(), model.lora().flat_grad().to(at::kFloat).cpu().clone()};
}

void expect_packed_equals_padded(const at::Device& dev, at::ScalarType dt, double loss_tol, double grad_tol) {
  auto model = test::tiny_with_adapters(dev, dt);
  for (auto policy : {OverlongPolicy::truncate, OverlongPolicy::drop}) {
    const auto rows = rows_under(policy, model.config().vocab_size);
    const int64_t capacity = capacity_for(policy);
    int64_t full = 0;
    for (const auto& x : rows) full += int64_t(x.ids.size()) == capacity;
    if (policy == OverlongPolicy::truncate) EXPECT_GT(full, 0) << "some rows end exactly at the limit";
    for (bool checkpoint : {false, true}) {
      SCOPED_TRACE(std::string(policy == OverlongPolicy::truncate ? "truncate" : "drop") +
                   (checkpoint ? ", layer checkpointing" : ", no checkpointing"));
      const auto padded = step(model, rows, capacity, false, checkpoint);
      const auto packed = step(model, rows, capacity, true, checkpoint);
      const double el = test::rel_err(packed.loss, padded.loss), eg = test::rel_err(packed.grad, padded.grad);
      std::printf("packed vs padded (%zu rows, %lld at the limit): loss rel err %.3g, adapter grad max rel err %.3g\n",
                  rows.size(), (long long)full, el, eg);
      EXPECT_GT(padded.grad.abs().max().item<double>(), 0.0);
      EXPECT_LE(el, loss_tol);
      EXPECT_LE(eg, grad_tol);
    }
  }
}

TEST(Packing, APackedBatchGivesThePaddedLossAndGradientsOnTheCpu) {
  expect_packed_equals_padded(at::Device(at::kCPU), at::kFloat, 1e-5, 1e-5);
}

TEST(Packing, APackedBatchGivesThePaddedLossAndGradientsOnTheGpuInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  ASSERT_TRUE(compat::varlen_attention_applies(at::Device(at::kCUDA, 0), at::kBFloat16))
      << "a CUDA build of libtorch >= 2.6 runs packed rows in the varlen flash kernel";
  // Different kernels (flash varlen against SDPA over padded rows) round bf16 differently.
  expect_packed_equals_padded(at::Device(at::kCUDA, 0), at::kBFloat16, 1e-2, 5e-2);
}

TEST(Packing, NoTokenSeesAnotherRowOfItsSequence) {
  auto model = test::tiny_with_adapters(at::Device(at::kCPU), at::kFloat);
  at::NoGradGuard ng;
  const std::vector<int64_t> lengths{23, 40, 17, 31};
  const int64_t total = 111;
  auto ids = at::randint(0, model.config().vocab_size, {1, total}, at::kLong);
  const auto layout = packed_rows(lengths, model.device(), model.dtype());
  const auto before = model.lm_head(model.hidden_states_train(ids, false, &layout));
  // Perturb every token of the second row (positions 23..62).
  auto changed = ids.clone();
  changed.narrow(1, 23, 40).add_(1).remainder_(model.config().vocab_size);
  const auto after = model.lm_head(model.hidden_states_train(changed, false, &layout));
  EXPECT_FALSE(at::equal(after.narrow(1, 23, 40), before.narrow(1, 23, 40))) << "the perturbed row itself changes";
  EXPECT_TRUE(at::equal(after.narrow(1, 0, 23), before.narrow(1, 0, 23))) << "the row before it";
  EXPECT_TRUE(at::equal(after.narrow(1, 63, 48), before.narrow(1, 63, 48))) << "the rows after it";
  // And each row's logits are the ones it has alone (positions restart at 0), to fp32 rounding.
  int64_t start = 0;
  for (int64_t n : lengths) {
    const auto alone = model.lm_head(model.hidden_states_train(ids.narrow(1, start, n), false));
    EXPECT_LE(test::rel_err(before.narrow(1, start, n), alone), 1e-5) << "row at " << start;
    start += n;
  }
}

TEST(Packing, TheLayoutRestartsPositionsAndMasksAcrossRows) {
  const auto p = packed_rows({2, 3}, at::Device(at::kCPU), at::kFloat);
  EXPECT_TRUE(at::equal(p.positions, at::tensor(std::vector<int64_t>{0, 1, 0, 1, 2}).view({1, 5})));
  EXPECT_TRUE(at::equal(p.cu_seqlens, at::tensor(std::vector<int32_t>{0, 2, 5})));
  EXPECT_EQ(p.longest, 3);
  ASSERT_TRUE(p.allowed.defined()) << "the CPU takes the block mask";
  const std::vector<std::vector<int>> want{
      {1, 0, 0, 0, 0}, {1, 1, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 1, 1, 0}, {0, 0, 1, 1, 1}};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) EXPECT_EQ(p.allowed[0][0][i][j].item<bool>(), bool(want[size_t(i)][size_t(j)])) << i << "," << j;
  EXPECT_THROW(packed_rows({}, at::Device(at::kCPU), at::kFloat), Error);
  EXPECT_THROW(packed_rows({3, 0}, at::Device(at::kCPU), at::kFloat), Error);
}

}  // namespace
}  // namespace r1dist
