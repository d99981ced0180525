// Held-out loss and drift over packed sequences (eval/drift.h) against the row-by-row
// figures computed here independently: one row per forward, unpacked, full logits. Rows of
// assorted lengths (one of a single token, one longer than the packing capacity) on the tiny
// fixture model with non-zero LoRA B, so that KL > 0. fp32 CPU: the sums agree to 1e-5
// relative, the counts exactly; the positions a packed sequence must not count (each row's
// last, whose next token belongs to another row) weigh far more than that tolerance.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "r1dist/data/packing.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/eval/drift.h"
#include "r1dist/eval/suite.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "support/models.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

constexpr int64_t kCapacity = 32;

// Rows of these lengths; the first `prompt` labels of each are -100 (no loss), as a prompt's.
std::vector<Example> rows_of(int64_t vocab) {
  const std::vector<int64_t> lengths{23, 1, 40, 7, 2, 16, 30, 9, 12, 5};
  std::vector<Example> rows;
  for (size_t r = 0; r < lengths.size(); ++r) {
    Example x;
    x.row = int64_t(r);
    for (int64_t i = 0; i < lengths[r]; ++i) {
      x.ids.push_back(int32_t((17 + 31 * int64_t(r) + 7 * i + i * i) % vocab));
      x.labels.push_back(i < int64_t(r % 4) ? -100 : x.ids.back());
    }
    rows.push_back(x);
  }
  return rows;
}

std::vector<const Example*> pointers(const std::vector<Example>& rows) {
  std::vector<const Example*> out;
  for (const auto& x : rows) out.push_back(&x);
  return out;
}

at::Tensor row_ids(const Example& x, const at::Device& dev) {
  std::vector<int64_t> ids(x.ids.begin(), x.ids.end());
  return at::tensor(ids, at::kLong).view({1, -1}).to(dev);
}

// The row-by-row figures (log-probabilities in fp32 as the evaluation computes them, sums in
// double). near_ties: positions whose base or tuned top-2
// log-probabilities lie within 1e-4 (where rounding may flip an argmax). boundary_kl: the KL
// at each row's last position, which a packed evaluation must not count.
struct RowByRow {
  double loss = 0;
  int64_t loss_tokens = 0;
  double kl = 0, boundary_kl = 0;
  int64_t positions = 0, agree = 0, near_ties = 0;
};

RowByRow row_by_row(const Qwen2Model& model, const std::vector<Example>& rows) {
  at::NoGradGuard ng;
  RowByRow r;
  for (const auto& x : rows) {
    const int64_t t = int64_t(x.ids.size());
    r.loss_tokens += loss_tokens(x);
    if (t < 2) continue;
    const auto ids = row_ids(x, model.device());
    std::vector<int64_t> labels(x.labels.begin(), x.labels.end());
    r.loss += causal_lm_loss_sum(model.forward(ids), at::tensor(labels, at::kLong).view({1, -1})).item<double>();
    at::Tensor lp_b;
    {
      AdaptersOff off(model.lora());
      lp_b = at::log_softmax(model.forward(ids)[0].to(at::kFloat), -1);  // (t, V)
    }
    const auto lp_t = at::log_softmax(model.forward(ids)[0].to(at::kFloat), -1);
    const auto kl = (lp_b.exp() * (lp_b - lp_t)).sum(-1).to(at::kDouble);  // (t): position i predicts token i + 1
    r.kl += kl.narrow(0, 0, t - 1).sum().item<double>();
    r.boundary_kl += kl[t - 1].item<double>();
    r.positions += t - 1;
    r.agree += lp_b.narrow(0, 0, t - 1).argmax(-1).eq(lp_t.narrow(0, 0, t - 1).argmax(-1)).sum().item<int64_t>();
    for (const auto& lp : {lp_b, lp_t}) {
      const auto top = std::get<0>(lp.narrow(0, 0, t - 1).topk(2, -1));
      r.near_ties += (top.select(1, 0) - top.select(1, 1)).lt(1e-4).sum().item<int64_t>();
    }
  }
  return r;
}

void expect_packed_equals_row_by_row(const Qwen2Model& model, const std::vector<Example>& rows, double tol) {
  const auto want = row_by_row(model, rows);
  ASSERT_GT(want.kl, 0.0) << "the adapters must have moved the model";
  // A boundary position counted would add its KL (or, for the loss, the NLL of the next row's
  // first token: a few nats each): far beyond the tolerance.
  ASSERT_GT(want.boundary_kl, 100 * tol * want.kl) << "the test could not tell a boundary position counted";
  const auto ptrs = pointers(rows);
  // capacity 1: every row alone (each longer than it); kCapacity: several rows per sequence
  // and one row alone; 1000: every row in one sequence.
  for (int64_t capacity : {int64_t(1), kCapacity, int64_t(1000)}) {
    for (int64_t chunk : {int64_t(7), int64_t(512)}) {
      SCOPED_TRACE("capacity " + std::to_string(capacity) + ", chunk " + std::to_string(chunk));
      const auto loss = eval_loss(model, ptrs, capacity);
      EXPECT_EQ(loss.count, want.loss_tokens);
      EXPECT_NEAR(loss.sum, want.loss, tol * std::abs(want.loss));
      const auto d = kl_drift(model, ptrs, capacity, chunk);
      EXPECT_EQ(d.kl.count, want.positions) << "positions 0..T-2 of each row";
      EXPECT_NEAR(d.kl.sum, want.kl, tol * want.kl);
      EXPECT_NEAR(double(d.agree), double(want.agree), double(want.near_ties)) << want.near_ties << " near ties";
      std::printf("capacity %4lld, chunk %3lld: loss %.9g vs %.9g (rel %.2g), KL %.9g vs %.9g (rel %.2g), "
                  "agree %lld vs %lld of %lld\n",
                  (long long)capacity, (long long)chunk, loss.sum, want.loss, std::abs(loss.sum / want.loss - 1),
                  d.kl.sum, want.kl, std::abs(d.kl.sum / want.kl - 1), (long long)d.agree, (long long)want.agree,
                  (long long)want.positions);
    }
  }
  for (auto& a : model.lora().refs()) EXPECT_TRUE(a.layer->adapter_enabled) << "the adapters are on again";
}

TEST(HeldOut, PackedLossAndDriftEqualTheRowByRowFiguresOnTheCpu) {
  const auto model = test::tiny_with_adapters(at::Device(at::kCPU), at::kFloat);
  const auto rows = rows_of(model.config().vocab_size);
  // At kCapacity the ten rows fill five sequences, one of three rows (two boundaries inside a
  // sequence, the one-token row among them), and the long row goes alone (tests/core
  // test_packing.cpp has the layout).
  const auto seqs = pack_examples(pointers(rows), kCapacity);
  ASSERT_EQ(seqs.size(), 5u);
  ASSERT_EQ(seqs[3].size(), 3u);
  ASSERT_EQ(seqs[3][2]->ids.size(), 1u);
  ASSERT_EQ(seqs[0].size(), 1u);
  ASSERT_EQ(seqs[0][0]->ids.size(), 40u);
  expect_packed_equals_row_by_row(model, rows, 1e-5);
}

TEST(HeldOut, AnUntouchedAdapterHasNoDriftOverPackedRows) {
  auto model = test::tiny_with_adapters(at::Device(at::kCPU), at::kFloat);
  {
    at::NoGradGuard ng;
    for (auto& [name, t] : model.lora().named_parameters())
      if (name.find("lora_B") != std::string::npos) t.zero_();
  }
  const auto rows = rows_of(model.config().vocab_size);
  const auto d = kl_drift(model, pointers(rows), kCapacity);
  EXPECT_EQ(d.agree, d.kl.count);
  EXPECT_NEAR(d.kl.mean(), 0.0, 1e-7);
  EXPECT_EQ(kl_drift(model, {}, kCapacity).kl.count, 0);
  EXPECT_EQ(eval_loss(model, {}, kCapacity).count, 0);
}

// loss_and_drift: eval_loss and kl_drift from one tuned pass; the base pass kept in BaseStates
// and read back by later calls (so the drift of an adapter that moved on is still measured
// against the base), refilled for other rows.
void expect_separate_figures(const Qwen2Model& model, const std::vector<const Example*>& rows, const LossAndDrift& got,
                             double rel) {
  const auto loss = eval_loss(model, rows, kCapacity);
  const auto d = kl_drift(model, rows, kCapacity, 16);
  EXPECT_EQ(got.loss.count, loss.count);
  EXPECT_NEAR(got.loss.sum, loss.sum, rel * std::abs(loss.sum));
  EXPECT_EQ(got.drift.kl.count, d.kl.count);
  EXPECT_NEAR(got.drift.kl.sum, d.kl.sum, rel * d.kl.sum);
  EXPECT_NEAR(double(got.drift.agree), double(d.agree), 0.02 * double(d.kl.count));
}

std::vector<at::Tensor> copies(const BaseStates& b) {
  std::vector<at::Tensor> out;
  for (const auto& t : b.per_sequence) out.push_back(t.clone());
  return out;
}

void check_loss_and_drift(const at::Device& dev, at::ScalarType dt, double rel) {
  auto model = test::tiny_with_adapters(dev, dt);
  const auto rows = rows_of(model.config().vocab_size);
  const auto all = pointers(rows);
  BaseStates base;
  const auto first = loss_and_drift(model, all, kCapacity, base, 16);
  ASSERT_EQ(base.per_sequence.size(), pack_examples(all, kCapacity).size());
  EXPECT_GT(first.drift.kl.sum, 0.0);
  expect_separate_figures(model, all, first, rel);
  for (const auto& t : base.per_sequence) EXPECT_EQ(t.device().type(), at::kCPU);  // nothing kept on the device
  const auto kept = copies(base);
  {
    at::NoGradGuard ng;
    auto flat = model.lora().flat();
    flat.add_(at::randn(flat.sizes(), flat.options().dtype(at::kFloat)).mul_(0.05));  // the adapters moved on
  }
  const auto second = loss_and_drift(model, all, kCapacity, base, 16);
  expect_separate_figures(model, all, second, rel);  // the kept base pass is the base model's
  EXPECT_GT(second.drift.kl.sum, first.drift.kl.sum);
  ASSERT_EQ(base.per_sequence.size(), kept.size());
  for (size_t i = 0; i < kept.size(); ++i) EXPECT_TRUE(at::equal(base.per_sequence[i], kept[i]));
  // The kept pass is what the drift reads: altered, the drift changes.
  for (auto& t : base.per_sequence) t.mul_(1.5);
  const auto altered = loss_and_drift(model, all, kCapacity, base, 16);
  EXPECT_EQ(altered.loss.sum, second.loss.sum);
  EXPECT_GT(std::abs(altered.drift.kl.sum - second.drift.kl.sum), 0.1 * second.drift.kl.sum);
  // Other rows (another packing): refilled, and right again.
  const std::vector<const Example*> some(all.begin(), all.begin() + 3);
  const auto other = loss_and_drift(model, some, kCapacity, base, 16);
  EXPECT_EQ(base.per_sequence.size(), pack_examples(some, kCapacity).size());
  expect_separate_figures(model, some, other, rel);
  // Rows of the same lengths with other tokens, after a call that kept all the rows' base
  // pass: refilled too.
  loss_and_drift(model, all, kCapacity, base, 16);
  auto changed = rows;
  for (auto& x : changed)
    for (auto& id : x.ids) id = int32_t((id + 1) % model.config().vocab_size);
  const auto fresh = loss_and_drift(model, pointers(changed), kCapacity, base, 16);
  expect_separate_figures(model, pointers(changed), fresh, rel);
  BaseStates none;
  const auto empty = loss_and_drift(model, {}, kCapacity, none);
  EXPECT_EQ(empty.loss.count, 0);
  EXPECT_EQ(empty.drift.kl.count, 0);
}

TEST(HeldOut, OneTunedPassGivesLossAndDriftAndTheBasePassIsKept) {
  check_loss_and_drift(at::Device(at::kCPU), at::kFloat, 1e-6);
}

TEST(HeldOut, OneTunedPassGivesLossAndDriftAndTheBasePassIsKeptOnTheGpuInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  // The kept pass goes to pinned host memory and back: the same values, so the same sums up
  // to the order of additions.
  check_loss_and_drift(at::Device(at::kCUDA, 0), at::kBFloat16, 1e-3);
}

TEST(HeldOut, PackedLossAndDriftEqualTheRowByRowFiguresOnTheGpuInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  ASSERT_TRUE(compat::varlen_attention_applies(at::Device(at::kCUDA, 0), at::kBFloat16));
  // Different kernels (varlen flash against SDPA over one row) round bf16 differently.
  const auto model = test::tiny_with_adapters(at::Device(at::kCUDA, 0), at::kBFloat16);
  const auto rows = rows_of(model.config().vocab_size);
  const auto want = row_by_row(model, rows);
  const auto loss = eval_loss(model, pointers(rows), kCapacity);
  EXPECT_EQ(loss.count, want.loss_tokens);
  EXPECT_NEAR(loss.sum, want.loss, 1e-2 * std::abs(want.loss));
  const auto d = kl_drift(model, pointers(rows), kCapacity);
  EXPECT_EQ(d.kl.count, want.positions);
  EXPECT_NEAR(d.kl.sum, want.kl, 5e-2 * want.kl);
}

// The evaluation suite (`r1dist eval`, a run's eval.suite): loss over every held-out row and
// drift over the first kl_rows, the drift rows' loss from their one tuned pass; each figure
// equal to the separate computation over the same rows. Without adapters: the loss alone.
TEST(HeldOut, TheEvalSuiteGivesTheLossOfEveryRowAndTheDriftOfTheFirstKlRows) {
  if (!std::filesystem::exists(std::string(R1DIST_TOKENIZER_DIR) + "/tokenizer.json"))
    GTEST_SKIP() << "no R1 tokenizer in " << R1DIST_TOKENIZER_DIR << " (bash tools/install-deps.sh writes it)";
  const auto tok = Tokenizer::load(R1DIST_TOKENIZER_DIR);  // the suite's generations and MCQ: none here
  const auto tmpl = PromptTemplate::configured("");
  auto model = test::tiny_with_adapters(at::Device(at::kCPU), at::kFloat);
  const auto rows = rows_of(model.config().vocab_size);
  const auto all = pointers(rows);
  const auto loss = eval_loss(model, all, kCapacity);
  for (int64_t kl_rows : {int64_t(0), int64_t(4), int64_t(100)}) {
    SCOPED_TRACE("kl_rows " + std::to_string(kl_rows));
    SuiteInputs in;
    in.held_out = all;
    in.kl_rows = kl_rows;
    in.capacity = kCapacity;
    const auto s = run_eval_suite(model, tok, tmpl, in);
    EXPECT_EQ(s.rows, int64_t(rows.size()));
    EXPECT_EQ(s.loss_tokens, loss.count);
    EXPECT_NEAR(s.loss, loss.mean(), 1e-6 * loss.mean());
    const std::vector<const Example*> first(all.begin(), all.begin() + std::min<size_t>(all.size(), size_t(kl_rows)));
    const auto d = kl_drift(model, first, kCapacity);
    ASSERT_TRUE(s.has_drift);
    EXPECT_EQ(s.drift_tokens, d.kl.count);
    EXPECT_NEAR(s.kl, d.kl.mean(), 1e-6 * d.kl.mean());
    if (kl_rows > 0) EXPECT_GT(s.kl, 0.0);
    EXPECT_NEAR(s.top1_agreement, d.kl.count > 0 ? double(d.agree) / double(d.kl.count) : 1.0, 0.02);
  }
  const auto plain = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  SuiteInputs in;
  in.held_out = all;
  in.capacity = kCapacity;
  const auto base = run_eval_suite(plain, tok, tmpl, in);
  EXPECT_FALSE(base.has_drift);
  const auto base_loss = eval_loss(plain, all, kCapacity);
  EXPECT_NEAR(base.loss, base_loss.mean(), 1e-6 * base_loss.mean());
}

}  // namespace
}  // namespace r1dist
