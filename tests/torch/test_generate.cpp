// Generation (eval/generate.h) against HF transformers `generate`: greedy tokens on the tiny
// fixture models (tests/fixtures/generate/*.json, tools/reference/make_generate_fixture.py),
// one prompt at a time and as a left-padded batch, with and without the KV cache; then the
// decoding rules on crafted logits (HF's processors) and the stop / seed behaviour.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>

#include "r1dist/eval/generate.h"
#include "r1dist/tensor/fused_ops.h"
#include "support/temp.h"

namespace r1dist {
namespace {

using nlohmann::json;
using Ids = std::vector<std::vector<int64_t>>;

json read_case(const std::string& model) {
  std::ifstream f(test::fixture("generate/" + model + ".json"));
  EXPECT_TRUE(f.good()) << "missing fixture generate/" << model << ".json";
  return json::parse(f);
}

Ids tokens_of(const std::vector<Generation>& gens) {
  Ids out;
  for (const auto& g : gens) out.push_back(g.tokens);
  return out;
}

class GenerateParity : public ::testing::TestWithParam<const char*> {};

TEST_P(GenerateParity, GreedyTokensEqualTransformers) {
  const auto c = read_case(GetParam());
  auto model = Qwen2Model::load(test::fixture(GetParam()), at::kFloat, at::Device(at::kCPU));
  const auto prompts = c["prompts"].get<Ids>();
  GenerateOptions opt;
  opt.max_new_tokens = c["new_tokens"].get<int64_t>();
  opt.sampling.greedy = true;
  opt.pad_id = c["pad_id"].get<int64_t>();
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache ? "with the KV cache" : "without the KV cache");
    opt.use_cache = cache;
    const std::string key = cache ? "cache" : "no_cache";
    Ids single;
    for (const auto& p : prompts) single.push_back(generate(model, {p}, opt).at(0).tokens);
    EXPECT_EQ(single, c["single_" + key].get<Ids>()) << "one prompt at a time";
    EXPECT_EQ(tokens_of(generate(model, prompts, opt)), c["batch_" + key].get<Ids>())
        << "a left-padded batch of prompts of different lengths";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateParity, ::testing::Values("qwen2_a", "qwen2_b"));

// Padding is invisible: a row's logits in a left-padded batch equal its logits alone.
TEST(Generate, LeftPaddedRowsSeeOnlyTheirOwnTokens) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  at::NoGradGuard no_grad;
  auto longs = at::TensorOptions().dtype(at::kLong);
  auto row = at::tensor(std::vector<int64_t>{5, 17, 42, 99}, longs).view({1, 4});
  auto alone = model.forward(row);
  auto padded = at::cat({at::full({1, 3}, 7, longs), row}, 1);
  auto batched = model.forward(padded, nullptr, at::tensor(std::vector<int64_t>{3}, longs));
  EXPECT_TRUE(at::allclose(batched.slice(1, 3), alone, 1e-5, 1e-5));
  ASSERT_FALSE(batched.isnan().any().item<bool>()) << "pad positions must not produce NaN";
}

// The decode steps (model/decoder.h: GQA groups attending together, writes at a device-side
// column, spans rounded up to a bucket) give the logits of a full forward over the whole
// sequence, for left-padded rows, also when the decoding crosses a span bucket. On the GPU
// (fp32) the steps run the fused kernels (residual add + norm; the decoding attention kernel
// unless R1DIST_DECODE_ATTENTION=0) and the full forward does not.
void expect_decoder_steps_equal_the_full_forward(const at::Device& dev) {
  auto model = Qwen2Model::load(test::fixture("qwen2_b"), at::kFloat, dev);  // 6 heads, 2 kv
  at::NoGradGuard no_grad;
  auto longs = at::TensorOptions().dtype(at::kLong);
  const int64_t len = Decoder::kSpanBucket - 3, steps = 6;
  auto ids = at::randint(0, 250, {2, len}, longs);
  ids.slice(1, 0, 5).select(0, 1).fill_(0);  // row 1: five pad columns
  ids = ids.to(dev);
  const auto pads = at::tensor(std::vector<int64_t>{0, 5}, longs).to(dev);
  Decoder dec(model, len + steps, /*cuda_graphs=*/false);
  auto logits = dec.prefill(ids, pads);
  auto seq = ids;
  for (int64_t s = 0; s < steps; ++s) {
    auto tok = logits.argmax(1);
    seq = at::cat({seq, tok.view({-1, 1})}, 1);
    logits = dec.step(tok);
    model.set_fused(false);
    auto full = model.forward(seq, nullptr, pads).select(1, seq.size(1) - 1);
    model.set_fused(fused::on_by_default(dev));
    EXPECT_TRUE(at::allclose(logits, full, 1e-4, 1e-5))
        << "step " << s << " (cache length " << dec.length() << "): max diff "
        << (logits - full).abs().max().item<double>();
  }
  EXPECT_EQ(dec.length(), len + steps);
  EXPECT_THROW(dec.step(logits.argmax(1)), Error) << "a full cache refuses another step";
}

TEST(Generate, DecoderStepsEqualTheFullForwardAcrossSpanBuckets) {
  expect_decoder_steps_equal_the_full_forward(at::Device(at::kCPU));
}

TEST(Generate, DecoderStepsEqualTheFullForwardAcrossSpanBucketsOnTheGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  expect_decoder_steps_equal_the_full_forward(at::Device(at::kCUDA, 0));
}

// CUDA graphs replay exactly what the eager steps do: the same greedy tokens (fp32 on the
// GPU), with left padding, over more than one span bucket (one graph per span).
TEST(Generate, CudaGraphDecodingEqualsEagerDecoding) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCUDA, 0));
  const Ids prompts = {{5, 17, 42, 99, 3, 8}, {11, 12}, {200, 201, 202, 203}};
  GenerateOptions opt;
  opt.sampling.greedy = true;
  opt.max_new_tokens = Decoder::kSpanBucket + 40;
  opt.cuda_graphs = false;
  const auto eager = tokens_of(generate(model, prompts, opt));
  opt.cuda_graphs = true;
  EXPECT_EQ(tokens_of(generate(model, prompts, opt)), eager);
  at::NoGradGuard no_grad;
  Decoder dec(model, opt.max_new_tokens + 8, true);
  auto logits = dec.prefill(at::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}, at::kLong).view({1, -1}).cuda(), {});
  for (int64_t s = 0; s < opt.max_new_tokens; ++s) logits = dec.step(logits.argmax(1));
  EXPECT_TRUE(dec.graphs_enabled());
  EXPECT_EQ(dec.graphs_captured(), 2) << "spans 256 and 512";
}

TEST(Generate, StopsARowAtAStopIdAndLetsTheOthersRun) {
  const auto c = read_case("qwen2_a");
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto prompts = c["prompts"].get<Ids>();
  const auto want = c["batch_cache"].get<Ids>();
  GenerateOptions opt;
  opt.max_new_tokens = 24;
  opt.sampling.greedy = true;
  // Row 0's fourth token becomes a stop id: row 0 ends there (its first occurrence).
  const int64_t stop = want[0][3];
  opt.stop_ids = {stop};
  const auto gens = generate(model, prompts, opt);
  for (size_t r = 0; r < prompts.size(); ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    const auto first = std::find(want[r].begin(), want[r].end(), stop);
    const std::vector<int64_t> expect(want[r].begin(), first == want[r].end() ? first : first + 1);
    EXPECT_EQ(gens[r].tokens, expect);
    EXPECT_EQ(gens[r].stopped_at_eos, first != want[r].end());
  }
}

TEST(Generate, SamplingIsSeededAndTopKOneIsGreedy) {
  auto model = Qwen2Model::load(test::fixture("qwen2_b"), at::kFloat, at::Device(at::kCPU));
  const Ids prompts = {{3, 14, 15, 92}, {65, 35}};
  GenerateOptions opt;
  opt.max_new_tokens = 16;
  opt.sampling.temperature = 1.5;
  opt.sampling.top_p = 1.0;
  opt.sampling.seed = 7;
  const auto a = tokens_of(generate(model, prompts, opt));
  EXPECT_EQ(tokens_of(generate(model, prompts, opt)), a) << "the same seed, the same tokens";
  opt.sampling.seed = 8;
  EXPECT_NE(tokens_of(generate(model, prompts, opt)), a) << "another seed, other tokens";
  opt.sampling.top_k = 1;
  auto greedy = opt;
  greedy.sampling.greedy = true;
  EXPECT_EQ(tokens_of(generate(model, prompts, opt)), tokens_of(generate(model, prompts, greedy)));
}

// HF's processors on crafted logits: RepetitionPenalty, then TopK, then TopP.
TEST(Generate, ProcessorsFollowTransformers) {
  auto logits = at::tensor(std::vector<float>{2.0f, -1.0f, 1.0f, 0.5f}).view({1, 4});
  auto seen = at::tensor(std::vector<int64_t>{0, 1, 3}, at::kLong).view({1, 3});
  auto mask = at::ones({1, 3}, at::kBool);
  SamplingParams p;
  p.greedy = true;
  EXPECT_EQ(choose_tokens(logits, seen, mask, p, {1.0}).item<int64_t>(), 0);
  p.repetition_penalty = 4.0;  // 2 -> 0.5, -1 -> -4, 0.5 -> 0.125; token 2 (1.0) now leads
  EXPECT_EQ(choose_tokens(logits, seen, mask, p, {1.0}).item<int64_t>(), 2);
  auto pad_first = mask.clone();
  pad_first.index_put_({0, 0}, false);  // token 0 at a pad position is not "seen": 2.0 leads again
  EXPECT_EQ(choose_tokens(logits, seen, pad_first, p, {1.0}).item<int64_t>(), 0);

  // Sampling by inverse CDF: probabilities softmax([2, -1, 1, 0.5]) = .61, .03, .22, .14.
  SamplingParams s;
  s.temperature = 1.0;
  s.top_p = 1.0;
  auto draw = [&](double u) { return choose_tokens(logits, seen, mask, s, {u}).item<int64_t>(); };
  EXPECT_EQ(draw(0.5), 0);
  EXPECT_EQ(draw(0.62), 1);
  EXPECT_EQ(draw(0.80), 2);
  EXPECT_EQ(draw(1.0), 3);
  s.top_k = 2;  // only tokens 0 and 2 remain: .73, .27
  EXPECT_EQ(draw(0.70), 0);
  EXPECT_EQ(draw(0.80), 2);
  EXPECT_EQ(draw(1.0), 2);
  s.top_k = 0;
  s.top_p = 0.6;  // ascending cumulative .03 .17 .39 1: tokens 1, 3, 2 fall below 1 - .6
  EXPECT_EQ(draw(1.0), 0);
  s.top_p = 0.7;  // .03 .17 <= .3 are removed; 2 (.39) stays
  EXPECT_EQ(draw(1.0), 2);
}

TEST(Generate, BadSettingsAreRefusedByName) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  GenerateOptions opt;
  opt.sampling.temperature = -0.5;  // 0 is greedy; below it means nothing
  EXPECT_THROW(generate(model, {{1, 2}}, opt), UsageError);
  opt.sampling.temperature = 0.6;
  opt.sampling.top_p = 1.5;
  EXPECT_THROW(generate(model, {{1, 2}}, opt), UsageError);
  opt.sampling.top_p = 0.9;
  EXPECT_THROW(generate(model, {{}}, opt), UsageError);
  // A KV cache that cannot be allocated is refused naming its shape and the setting that sizes
  // it, not with the allocator's stack: 2^60 bytes a tensor (fp32), past any address space
  // whatever the machine's overcommit policy.
  const int64_t positions = (int64_t(1) << 58) / model.config().kv_dim();
  Decoder dec(model, positions, /*cuda_graphs=*/false);
  at::NoGradGuard no_grad;
  const auto ids = at::tensor(std::vector<int64_t>{1, 2}, at::TensorOptions().dtype(at::kLong)).view({1, 2});
  EXPECT_TRUE(test::ThrowsWith([&] { dec.prefill(ids, at::Tensor()); },
                               {"the KV cache of 1 row x " + std::to_string(positions) + " positions",
                                "cannot be allocated on cpu", "HINT: fewer new tokens (--max-new-tokens"}));
}

}  // namespace
}  // namespace r1dist
