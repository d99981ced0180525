// Evaluation pieces against references: an adapter saved by HF PEFT (not by r1dist) gives
// PEFT's logits once attached; the merged model gives PEFT's merge_and_unload logits
// (tools/reference/make_generate_fixture.py); multiple-choice scores equal an independent
// per-sequence computation; a model trained to repeat itself is flagged as collapsed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "r1dist/data/prompt_template.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/eval/generate.h"
#include "r1dist/eval/multiple_choice.h"
#include "r1dist/eval/suite.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/model/init_model.h"
#include "r1dist/model/saved_adapter.h"
#include "r1dist/quality/repetition.h"
#include "r1dist/tensor/bytes.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "r1dist/train/optim.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

TEST(SavedAdapter, APeftSavedAdapterGivesPeftsLogits) {
  auto f = st::File::open(test::fixture("peft_a") + "/reference.safetensors");
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  const auto desc = attach_saved_adapter(model, test::fixture("peft_a"), test::fixture("qwen2_a"));
  EXPECT_NE(desc.find("r 8"), std::string::npos) << desc;
  at::NoGradGuard ng;
  const auto logits = model.forward(test::reference_tensor(f, "input_ids"));
  const double err =
      test::max_rel_err(logits, test::reference_tensor(f, "logits"), 1e-4, "logits with PEFT's own adapter files");
  std::printf("PEFT-saved adapter: logits max rel err %.3g\n", err);
}

TEST(SavedAdapter, MergedModelGivesPeftsMergeLogits) {
  const auto merge_ref = st::File::open(test::fixture("generate/peft_merge.safetensors"));
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  attach_saved_adapter(model, test::fixture("peft_a"), test::fixture("qwen2_a"));
  test::TempDir tmp;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto out = tmp / (dtype == at::kFloat ? "fp32" : "bf16");
    save_merged_model(model, test::fixture("qwen2_a"), out, dtype, /*max_shard_bytes=*/64 << 10);
    EXPECT_TRUE(std::filesystem::exists(out + "/model.safetensors.index.json")) << "64 KB shards: an index";
    auto merged = Qwen2Model::load(out, at::kFloat, at::Device(at::kCPU));
    EXPECT_FALSE(merged.lora().attached());
    at::NoGradGuard ng;
    const auto logits = merged.forward(test::reference_tensor(merge_ref, "input_ids"));
    // bf16 storage rounds every weight to 8 mantissa bits.
    const double tol = dtype == at::kFloat ? 1e-4 : 3e-2;
    const double err =
        test::max_rel_err(logits, test::reference_tensor(merge_ref, "logits_merged"), tol, "merged model logits");
    std::printf("merged (%s): logits max rel err %.3g vs PEFT merge_and_unload\n",
                dtype == at::kFloat ? "fp32" : "bf16", err);
    if (dtype == at::kFloat) {
      auto merged_st = st::Checkpoint::open_dir(out);
      const std::string w = "model.layers.0.self_attn.q_proj.weight";
      test::max_rel_err(tensor_from_bytes(merged_st.info(w), merged_st.data(w)),
                        test::reference_tensor(merge_ref, "weight." + w), 1e-6, "merged q_proj weight");
    }
  }
}

TEST(SavedAdapter, MissingOrWrongAdaptersAreRefusedByPath) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  EXPECT_THROW(attach_saved_adapter(model, "/nonexistent/adapter", test::fixture("qwen2_a")), UsageError);
  EXPECT_THROW(attach_saved_adapter(model, test::fixture("qwen2_a"), test::fixture("qwen2_a")), UsageError) << "a model dir, not an adapter";
}

// The R1 tokenizer on a tiny random model (vocab 151,665): for the MCQ test.
std::string tiny_model_with_tokenizer(const test::TempDir& tmp) {
  const std::string dir = tmp / "tiny";
  auto cfg = qwen2_preset("tiny");
  InitModelOptions o;
  o.seed = 4;
  o.dtype = "fp32";
  write_random_model(cfg, dir, o);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(std::string(R1DIST_TOKENIZER_DIR) + "/" + f, dir + "/" + f);
  return dir;
}

TEST(MultipleChoice, ScoresEqualAnIndependentComputationAndAccuracyCountsThem) {
  if (!std::filesystem::exists(std::string(R1DIST_TOKENIZER_DIR) + "/tokenizer.json"))
    GTEST_SKIP() << "no R1 tokenizer in " << R1DIST_TOKENIZER_DIR << " (bash tools/install-deps.sh writes it)";
  test::TempDir tmp;
  const auto dir = tiny_model_with_tokenizer(tmp);
  auto model = Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU));
  const auto tok = Tokenizer::load(dir);
  const auto tmpl = PromptTemplate::configured("");
  std::vector<MultipleChoice> items(3);
  items[0].stem = "Which electrolyte disturbance causes peaked T waves?";
  items[0].options = {{"A", "Hypokalemia"}, {"B", "Hyperkalemia"}, {"C", "Hyponatremia"}};
  items[1].stem = "头晕目眩，恶心，最可能的原因是什么？";
  items[1].options = {{"A", "睡眠不足"}, {"B", "骨折"}, {"C", "近视"}, {"D", "龋齿"}};
  items[2].stem = "First-line treatment for anaphylaxis?";
  items[2].options = {{"A", "Intramuscular epinephrine"}, {"B", "Oral antihistamine"}};
  // The independent computation: each option alone, unpadded, full logits.
  std::vector<std::vector<double>> want(items.size());
  at::NoGradGuard ng;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto ctx = tok.encode(multiple_choice_context(tmpl, items[i]), true);
    for (const auto& [letter, text] : items[i].options) {
      const auto cont = tok.encode(text);
      std::vector<int64_t> ids(ctx.begin(), ctx.end());
      ids.insert(ids.end(), cont.begin(), cont.end());
      const auto lp = at::log_softmax(model.forward(at::tensor(ids).view({1, -1}))[0], -1);
      double sum = 0;
      for (size_t t = ctx.size(); t < ids.size(); ++t) sum += lp[int64_t(t) - 1][ids[t]].item<double>();
      want[i].push_back(sum / double(cont.size()));
    }
  }
  // Answers: the independent argmax for items 0 and 2, another option for item 1: 2 of 3.
  auto argmax = [](const std::vector<double>& v) { return size_t(std::max_element(v.begin(), v.end()) - v.begin()); };
  items[0].answer = argmax(want[0]);
  items[1].answer = (argmax(want[1]) + 1) % items[1].options.size();
  items[2].answer = argmax(want[2]);
  std::vector<const MultipleChoice*> ptrs;
  for (const auto& m : items) ptrs.push_back(&m);
  for (int64_t batch : {1, 3, 16}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const auto r = score_multiple_choice(model, tok, tmpl, ptrs, batch);
    ASSERT_EQ(r.items.size(), 3u);
    for (size_t i = 0; i < items.size(); ++i)
      for (size_t k = 0; k < want[i].size(); ++k) EXPECT_NEAR(r.items[i].scores[k], want[i][k], 1e-4);
    EXPECT_EQ(r.accuracy.correct, 2);
    EXPECT_EQ(r.accuracy.total, 3);
    EXPECT_DOUBLE_EQ(r.accuracy.value, 2.0 / 3.0);
  }
}

// Qwen2's embedding has 151,936 rows for 151,665 tokens: a generated id without a token
// reads as a marker, not a failed decode (a random tiny model emitted one in the demo).
TEST(DecodeGenerated, IdsWithoutATokenBecomeMarkers) {
  if (!std::filesystem::exists(std::string(R1DIST_TOKENIZER_DIR) + "/tokenizer.json"))
    GTEST_SKIP() << "no R1 tokenizer in " << R1DIST_TOKENIZER_DIR;
  const auto tok = Tokenizer::load(R1DIST_TOKENIZER_DIR);
  const auto ids = tok.encode("头晕");
  std::vector<int64_t> gen(ids.begin(), ids.end());
  gen.push_back(151813);
  gen.insert(gen.end(), ids.begin(), ids.end());
  EXPECT_EQ(decode_generated(tok, gen), "头晕[id 151813]头晕");
}

// A model trained to repeat a short cycle generates it over and over: flagged as collapsed.
TEST(Collapse, AModelTrainedToRepeatIsFlagged) {
  auto model = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU));
  model.attach_lora(LoraSpec{32, 64, 0.0, false},
                    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 1);
  const std::vector<int64_t> cycle = {11, 42, 97, 150, 203, 260};
  std::vector<int64_t> seq;
  for (int i = 0; i < 60; ++i) seq.push_back(cycle[size_t(i) % cycle.size()]);
  const auto ids = at::tensor(seq).view({1, -1});
  AdamWConfig ac;
  ac.weight_decay = 0;
  auto params = model.lora().flat();
  AdamW opt(params, ac);
  double loss_value = 0;
  for (int step = 0; step < 60; ++step) {
    model.lora().flat_grad().zero_();
    auto loss = causal_lm_loss(model.lm_head(model.hidden_states_train(ids, false)), ids);
    loss.backward();
    opt.step(params, model.lora().flat_grad(), 1e-2);
    loss_value = loss.item<double>();
  }
  ASSERT_LT(loss_value, 2.0) << "the adapters did not learn the cycle";
  GenerateOptions g;
  g.max_new_tokens = 60;
  g.sampling.greedy = true;
  auto in_cycle = [&](const std::vector<int64_t>& t) {
    return std::count_if(t.begin(), t.end(), [&](int64_t x) { return std::count(cycle.begin(), cycle.end(), x) > 0; });
  };
  const auto out = generate(model, {{11, 42, 97}}, g).at(0);
  EXPECT_GE(in_cycle(out.tokens), 54) << "the generation is the trained cycle";
  const auto rep = measure_repetition(out.tokens);
  EXPECT_TRUE(rep.collapsed) << "repeated 4-grams " << rep.repeated_4gram_share;
  EXPECT_GT(rep.repeated_4gram_share, 0.8);
  {
    AdaptersOff off(model.lora());
    EXPECT_LT(in_cycle(generate(model, {{11, 42, 97}}, g).at(0).tokens), 30) << "the base does not produce it";
  }
}

}  // namespace
}  // namespace r1dist
