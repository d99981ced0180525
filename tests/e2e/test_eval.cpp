// The evaluation commands end to end on the tiny model and the 2-rank reference run:
// `r1dist eval` (table, JSON, /eval in HDF5), `generate`, `merge`, and `report` over a
// fine-tuned run and its base.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "e2e/trainer_runs.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/log/time_split.h"
#include "support/process.h"
#include "support/safetensors_edit.h"
#include "support/temp.h"
#include "support/time_split_json.h"
#include "support/tokenizer.h"

namespace r1dist::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string mcq_data() { return source_dir() + "/data/sample_mcq_en.jsonl"; }

TEST(EvalCli, MeasuresTheReferenceRunAgainstItsBase) {
  const auto ref = reference_run();
  TempDir d;
  // The run's own evaluation writes into its directory (the data cache): a private copy.
  // (The fixture's config names the folder it was built in; --set points it at the copy.)
  const std::string run = reference_copy(d);
  const std::string sets = " --set output.dir=" + run +
                           " --set eval.max_new_tokens=8 --set eval.mcq_path=" + mcq_data() +
                           " --set 'eval.prompts=[\"头晕目眩\",\"What causes anemia?\"]'";
  auto r = run_r1dist("eval --cfg " + ref.out + ".toml" + sets + " --out " + (d / "eval.h5") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["adapter"], run + "/adapter") << "--cfg picks the run's exported adapter";
  EXPECT_EQ(j["rows"], 4);
  EXPECT_GT(j["loss"].get<double>(), 0);
  // The in-training evaluation at step 10 measured the same rows with the same adapter.
  EXPECT_NEAR(j["loss"].get<double>(), ref.metrics.evals.back().eval_loss, 1e-4);
  EXPECT_GT(j["drift"]["kl"].get<double>(), 0);
  EXPECT_LE(j["drift"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_GT(j["drift"]["drift_tokens"].get<int>(), 0);
  EXPECT_EQ(j["mcq"]["total"], 12);
  // The interval under the names the HDF5 file uses (mcq_ci95_low there: nested, no prefix).
  EXPECT_LE(j["mcq"]["ci95_low"].get<double>(), j["mcq"]["accuracy"].get<double>());
  EXPECT_GE(j["mcq"]["ci95_high"].get<double>(), j["mcq"]["accuracy"].get<double>());
  ASSERT_EQ(j["generations"].size(), 2u);
  EXPECT_EQ(j["generations"][0]["prompt"], "头晕目眩");
  EXPECT_LE(j["generations"][0]["tokens"].get<int>(), 8);
  EXPECT_TRUE(j["generations"][0].contains("stopped_at_eos"));
  const auto back = read_eval_group(d / "eval.h5");
  ASSERT_TRUE(back.has_value());
  EXPECT_NEAR(back->loss, j["loss"].get<double>(), 1e-12);
  EXPECT_EQ(back->mcq.low, j["mcq"]["ci95_low"].get<double>());
  EXPECT_EQ(back->drift_tokens, j["drift"]["drift_tokens"].get<int64_t>());
  ASSERT_EQ(back->generations.size(), 2u);
  EXPECT_EQ(back->generations[1].prompt, "What causes anemia?");
  // Where the command's time went: every stage ran, so each took some time; the parts and
  // other add up to the total; the log's table gives the same figures.
  const std::vector<std::string> names = {"load",  "held_out", "multiple_choice", "generations",
                                          "write", "other",    "total"};
  const auto parts = json_time_split(j["time_split"], names);
  ASSERT_EQ(parts.size(), names.size());
  for (const auto& p : parts)
    if (p.name != "other") EXPECT_GT(p.seconds, 0) << p.name << " ran, so it took some time";
  EXPECT_THAT(r.err, HasSubstr(format_time_split(
                         parts, "time split of this r1dist eval process (seconds, share of the total):")));
  if (on_path("h5dump")) {
    // Generations are groups named by their prompt, in prompt order.
    const auto dump = run_command("h5dump -g /eval " + (d / "eval.h5"));
    EXPECT_EQ(dump.code, 0);
    EXPECT_THAT(dump.out, HasSubstr("GROUP \"00-头晕目眩\""));
    EXPECT_THAT(dump.out, HasSubstr("GROUP \"01-what-causes-anemia\""));
    EXPECT_THAT(dump.out, HasSubstr("ATTRIBUTE \"stopped_at_eos\""));
    EXPECT_THAT(dump.out, HasSubstr("ATTRIBUTE \"mcq_ci95_low\""));
  }

  // The base alone: no drift, its own loss.
  r = run_r1dist("eval --cfg " + ref.out + ".toml" + sets + " --adapter none --no-generate --out none");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("adapter                    none (the base model)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("KL(base || tuned)"), std::string::npos);
  EXPECT_NE(r.out.find("multiple-choice accuracy"), std::string::npos);
}

TEST(EvalCli, BadInputIsRefusedWithTheReason) {
  auto r = run_r1dist("eval --model " + tiny_model_dir() + " --data /nonexistent.jsonl");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent.jsonl"), std::string::npos) << r.err;
  r = run_r1dist("eval --model " + tiny_model_dir() + " --data " + mcq_data() + " --rows 50");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--rows"), std::string::npos) << r.err;
  r = run_r1dist("eval --model " + tiny_model_dir() + " --data " + mcq_data() + " --rows 4 --adapter /nowhere");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("adapter /nowhere does not exist"), std::string::npos) << r.err;
}

// Without --cfg nothing is trained: the whole file (or its first --rows rows) is evaluated,
// and every figure covers the same rows. Each phase reports its progress.
TEST(EvalCli, WithoutAConfigEveryFigureCoversTheSameRows) {
  const std::string args = "eval --model " + tiny_model_dir() + " --data " + mcq_data() +
                           " --no-generate --out none --json --device cpu --dtype fp32";
  auto r = run_r1dist(args);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rows"], 12) << "the whole file";
  EXPECT_EQ(j["mcq"]["total"], 12);
  EXPECT_NE(r.err.find("model: loading"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("eval: multiple choice 12/12"), std::string::npos) << r.err;
  r = run_r1dist(args + " --rows 3");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rows"], 3);
  EXPECT_EQ(j["mcq"]["total"], 3) << "the MCQ items of the same rows";
}

// An adapter records the base it was trained on (NF4 here): without --cfg the base is loaded
// that way; a base loaded otherwise is warned about. A run directory stands for its adapter
// and, in checkpoint-diff, for its newest checkpoint.
TEST(EvalCli, AnAdapterLoadsTheBaseItWasTrainedOn) {
  const auto ref = reference_run();
  const std::string args = "eval --model " + tiny_model_dir() + " --data " + mcq_data() +
                           " --rows 2 --no-generate --out none --json --device cpu --dtype fp32";
  auto r = run_r1dist(args + " --adapter " + ref.out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["adapter"], ref.out + "/adapter");
  EXPECT_NE(r.err.find("trained on a base with quant nf4, dtype fp32: loading the base with --quant nf4"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("base nf4)"), std::string::npos) << r.err;
  r = run_r1dist(args + " --adapter " + ref.out + "/adapter --quant none");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("but this one is loaded with quant none, dtype fp32"), std::string::npos) << r.err;
  r = run_r1dist("checkpoint-diff " + ref.out + " " + ref.out + " --tol 0");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("steps 10 vs 10"), std::string::npos) << r.out;
}

TEST(GenerateCli, GreedyIsDeterministicAndStopsAtTheLimit) {
  const std::string args = "generate --model " + tiny_model_dir() + " --prompt 头晕 --prompt 'Why do I feel dizzy?' " +
                           "--max-new-tokens 6 --greedy --json";
  const auto a = run_r1dist(args), b = run_r1dist(args);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  int lines = 0;
  for (size_t p = 0; (p = a.out.find('\n', p)) != std::string::npos; ++p) ++lines;
  ASSERT_EQ(lines, 2);
  const auto first = nlohmann::json::parse(a.out.substr(0, a.out.find('\n')));
  EXPECT_EQ(first["prompt"], "头晕");
  EXPECT_LE(first["tokens"].get<int>(), 6);
  // Temperature 0 is greedy, as eval.temperature = 0 is.
  const auto zero = run_r1dist("generate --model " + tiny_model_dir() +
                               " --prompt 头晕 --prompt 'Why do I feel dizzy?' --max-new-tokens 6 --temperature 0 --json");
  EXPECT_EQ(zero.code, 0) << zero.err;
  EXPECT_EQ(zero.out, a.out);
  const auto sampled =
      run_r1dist("generate --model " + tiny_model_dir() + " --prompt 头晕 --max-new-tokens 6 --seed 3");
  EXPECT_EQ(sampled.code, 0) << sampled.err;
  const auto bad = run_r1dist("generate --model " + tiny_model_dir() + " --prompt x --top-p 2");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("top_p"), std::string::npos) << bad.err;
}

// A model whose vocabulary is smaller than its tokenizer's (qwen2_b: 256 rows; the R1 tokenizer's
// ids reach 151664): generate and eval refuse a prompt or row with an id beyond vocab_size
// (exit 2, naming the id, the vocabulary and the tokenizer) before any forward pass, where the
// embedding lookup would fail (on CUDA, as a device-side assert).
TEST(GenerateCli, IdsBeyondTheVocabularyAreRefusedBeforeTheModelRuns) {
  TempDir d;
  const std::string small = d / "small";
  copy_tree(fixture("qwen2_b"), small);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(r1_tokenizer_dir() + "/" + f, small + "/" + f);
  auto r = run_r1dist("generate --model " + small + " --prompt hello --max-new-tokens 2 --device cpu --dtype fp32");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(small + "/config.json: vocab_size is 256, but the tokenized data holds id "));
  EXPECT_THAT(r.err, HasSubstr("(prompt 1, token "));
  EXPECT_THAT(r.err, HasSubstr(small + "/tokenizer.json"));
  EXPECT_THAT(r.err, HasSubstr("HINT"));
  EXPECT_THAT(r.err, Not(HasSubstr("model: loading"))) << "refused before the model loads";
  r = run_r1dist("eval --model " + small + " --data " + mcq_data() + " --rows 2 --out none --device cpu --dtype fp32");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(small + "/config.json: vocab_size is 256, but the tokenized data holds id "));
  EXPECT_THAT(r.err, HasSubstr("(held-out row 0 of " + mcq_data()));
  EXPECT_THAT(r.err, Not(HasSubstr("model: loading")));
}

// Generation stops at every end-of-sequence id that transformers stops at: the tokenizer's
// EOS and the eos_token_id of config.json and of generation_config.json. The tiny model with
// the lm_head rows of id X and of its first greedy token swapped emits X first; X named as an
// eos_token_id in either file ends the generation there, in `generate` and in eval's
// generations alike.
TEST(GenerateCli, StopsAtTheEosTokenIdsOfConfigAndGenerationConfig) {
  TempDir d;
  const std::string m = d / "m";
  copy_tree(tiny_model_dir(), m);
  const std::string gen = "generate --model " + m + " --prompt hello --greedy --json --device cpu --dtype fp32";
  auto r = run_r1dist(gen + " --max-new-tokens 1");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto first = r1_tokenizer().encode(nlohmann::json::parse(r.out)["text"].get<std::string>());
  ASSERT_EQ(first.size(), 1u) << r.out;
  const int32_t x = first[0] == 1000 ? 1001 : 1000;
  rewrite_safetensors(m + "/model.safetensors", [&](std::vector<StoredTensor>& t) {
    auto& head = tensor_named(t, "lm_head.weight");
    std::swap_ranges(head.row_f32(x), head.row_f32(x) + head.shape[1], head.row_f32(first[0]));
  });
  const std::string x_text = r1_tokenizer().decode({x});
  auto generated = [&] {
    const auto g = run_r1dist(gen + " --max-new-tokens 3");
    EXPECT_EQ(g.code, 0) << g.err;
    return nlohmann::json::parse(g.out);
  };
  auto j = generated();
  EXPECT_EQ(j["text"].get<std::string>().rfind(x_text, 0), 0u) << j["text"] << " starts with id " << x;
  EXPECT_EQ(j["tokens"], 3) << "id " << x << " ends nothing yet";
  EXPECT_FALSE(j["stopped_at_eos"].get<bool>());
  write_text(m + "/generation_config.json", "{\"eos_token_id\": [151643, " + std::to_string(x) + "]}");
  j = generated();
  EXPECT_EQ(j["tokens"], 1) << "generation_config.json's eos_token_id";
  EXPECT_TRUE(j["stopped_at_eos"].get<bool>());
  std::filesystem::remove(m + "/generation_config.json");
  edit_json(m + "/config.json", [&](nlohmann::json& c) { c["eos_token_id"] = {151643, x}; });
  j = generated();
  EXPECT_EQ(j["tokens"], 1) << "config.json's eos_token_id list";
  EXPECT_TRUE(j["stopped_at_eos"].get<bool>());
  // eval's generations: the same prompt in the chat format, greedy.
  write_text(d / "eval.toml", "[model]\npath = \"" + m + "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n[data]\npath = \"" +
                                  mcq_data() + "\"\nmax_seq_len = 256\neval_rows = 2\n[eval]\nprompts = [\"hello\"]\n" +
                                  "max_new_tokens = 3\ntemperature = 0\nprompt_format = \"chat\"\n[output]\ndir = \"" +
                                  (d / "run") + "\"\n");
  r = run_r1dist("eval --cfg " + (d / "eval.toml") + " --adapter none --out none --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto e = nlohmann::json::parse(r.out)["generations"].at(0);
  EXPECT_EQ(e["tokens"], 1) << e;
  EXPECT_TRUE(e["stopped_at_eos"].get<bool>());
}

// Positions past config.json's max_position_embeddings give unreliable output: warned about
// for the longest prompt with its token limit (generate) and the longest row (eval, and a
// run's build phase, here its dry run), and silent within the limit.
TEST(GenerateCli, PositionsPastMaxPositionEmbeddingsAreWarnedAbout) {
  TempDir d;
  const std::string m = d / "m";
  copy_tree(tiny_model_dir(), m);
  edit_json(m + "/config.json", [](nlohmann::json& c) { c["max_position_embeddings"] = 24; });
  const std::string past = " goes past max_position_embeddings = 24 of " + m + "/config.json";
  const std::string gen = "generate --model " + m + " --prompt hello --greedy --device cpu --dtype fp32";
  auto r = run_r1dist(gen + " --max-new-tokens 20");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("tokens) with --max-new-tokens 20" + past));
  EXPECT_THAT(r.err, HasSubstr("HINT: lower --max-new-tokens"));
  r = run_r1dist(gen + " --max-new-tokens 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("max_position_embeddings")));
  r = run_r1dist("eval --model " + m + " --data " + mcq_data() +
                 " --rows 2 --no-generate --out none --device cpu --dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the longest row ("));
  EXPECT_THAT(r.err, HasSubstr("tokens; data.max_seq_len = 2048)" + past));
  write_text(d / "run.toml", "[model]\npath = \"" + m + "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n[data]\npath = \"" +
                                 sample_data() + "\"\nmax_seq_len = 64\ntrain_on_prompt = true\n[output]\ndir = \"" +
                                 (d / "run") + "\"\n");
  r = run_r1dist("train --cfg " + (d / "run.toml") + " --dry-run");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the longest row (64 tokens; data.max_seq_len = 64)" + past));
  EXPECT_THAT(r.err, HasSubstr("HINT: lower data.max_seq_len"));
}

TEST(MergeCli, WritesAModelDirectoryThatLoads) {
  const auto ref = reference_run();
  TempDir d;
  auto r = run_r1dist("merge --model " + tiny_model_dir() + " --adapter " + ref.out + "/adapter --out " + (d / "m") +
                      " --out-dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    EXPECT_TRUE(std::filesystem::exists(d / "m" + "/" + f)) << f;
  // The merged model scores the held-out rows as the base + adapter does (fp32; NF4 is not
  // involved: both load the base unquantised, the adapter's with --quant none).
  const auto merged =
      run_r1dist("eval --model " + (d / "m") + " --data " + mcq_data() +
                 " --rows 4 --no-generate --out none --json --device cpu --dtype fp32");
  const auto adapted = run_r1dist("eval --model " + tiny_model_dir() + " --adapter " + ref.out + "/adapter --data " +
                                  mcq_data() +
                                  " --rows 4 --no-generate --out none --json --device cpu --dtype fp32 --quant none");
  ASSERT_EQ(merged.code, 0) << merged.err;
  ASSERT_EQ(adapted.code, 0) << adapted.err;
  EXPECT_NEAR(nlohmann::json::parse(merged.out)["loss"].get<double>(),
              nlohmann::json::parse(adapted.out)["loss"].get<double>(), 1e-5);
  r = run_r1dist("merge --model " + tiny_model_dir() + " --out " + (d / "x"));
  EXPECT_EQ(r.code, 2) << "no adapter to merge";
}

// The merged directory's config.json is the base's but for the dtype of the written weights:
// a base without bos_token_id, eos_token_id and max_position_embeddings (transformers'
// defaults apply) and a vocabulary of 320 gives a merged model without them, which loads again
// and scores (no R1 id such as eos 151643 written into it).
TEST(MergeCli, KeepsTheBasesConfigJsonButForItsDtype) {
  TempDir d;
  const std::string base = d / "base";
  copy_tree(fixture("qwen2_a"), base);
  edit_json(base + "/config.json", [](nlohmann::json& j) {
    for (const char* k : {"bos_token_id", "eos_token_id", "max_position_embeddings"}) j.erase(k);
  });
  auto r = run_r1dist("merge --model " + base + " --adapter " + fixture("peft_a") + " --out " + (d / "m") +
                      " --out-dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  auto want = nlohmann::json::parse(read_text(base + "/config.json"));
  want["dtype"] = "float32";
  EXPECT_EQ(nlohmann::json::parse(read_text(d / "m/config.json")), want);
  write_text(d / "ids.json", "[[1, 2, 3, 4, 5, 6]]");
  r = run_r1dist("score --model " + (d / "m") + " --ids " + (d / "ids.json") + " --device cpu --dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(r.out)["sequences"][0]["mean_nll"].get<double>(), 0.0);
}

TEST(ReportCli, ComparesATunedRunWithItsBase) {
  const auto ref = reference_run();
  TempDir d;
  // The base: the reference config at train.steps = 0 with the full evaluation.
  const std::string base = d / "base";
  auto r = run_r1dist("--cfg " + ref.out + ".toml --set train.steps=0 --set model.name=base --set output.dir=" + base +
                      " --set eval.suite=true --set eval.max_new_tokens=8 --set eval.mcq_path=" + mcq_data() +
                      " --tensorboard");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(read_eval_group(base + "/metrics.h5").has_value()) << "eval.suite wrote /eval";
  // Submitted again (--resume auto, as a sweep's job does): done once per config.
  const std::string again = "--cfg " + ref.out + ".toml --set train.steps=0 --set model.name=base --set output.dir=" +
                            base + " --set eval.suite=true --set eval.max_new_tokens=8 --set eval.mcq_path=" +
                            mcq_data() + " --tensorboard --resume auto";
  r = run_r1dist(again);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("nothing to do: " + base + "/metrics.h5 holds this evaluation"), std::string::npos) << r.err;
  // Never over a fine-tune's directory.
  copy_tree(ref.out, d / "finetune");
  r = run_r1dist("--cfg " + ref.out + ".toml --set train.steps=0 --set output.dir=" + (d / "finetune"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("holds a fine-tune's checkpoints"), std::string::npos) << r.err;
  // Its TensorBoard events: the step-0 evaluation and the final one (suite/mcq_accuracy, ...).
  r = run_r1dist("metrics " + base + "/metrics.h5 --table eval");
  EXPECT_NE(r.out.find("mcq_accuracy\t"), std::string::npos) << r.out << r.err;
  expect_tensorboard_equals_metrics(base);
  // A copy of the reference run (the shared fixture stays untouched), evaluated.
  copy_tree(ref.out, d / "tuned");
  r = run_r1dist("eval --cfg " + ref.out + ".toml --set output.dir=" + (d / "tuned") + " --adapter " +
                 (d / "tuned/adapter") + " --out " + (d / "tuned/metrics.h5") +
                 " --set eval.max_new_tokens=8 --set eval.mcq_path=" + mcq_data());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_r1dist("report " + (d / "tuned") + " " + base + " --out " + (d / "rep") + " --title demo");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto md = read_text(d / "rep/report.md");
  EXPECT_NE(md.find("# demo"), std::string::npos);
  EXPECT_NE(md.find("| base |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tiny |"), std::string::npos) << md;  // the tuned run: the model directory's name
  EXPECT_TRUE(std::filesystem::exists(d / "rep/report.html"));
  if (on_path("gnuplot")) EXPECT_TRUE(std::filesystem::exists(d / "rep/loss_curves.png"));
  EXPECT_NE(r.out.find("\t"), std::string::npos) << "one verdict line per run on stdout";
  r = run_r1dist("report " + (d / "nothing") + " " + (d / "nothing2"));
  EXPECT_EQ(r.code, 2);
  // Each unreadable directory once, in the refusal (no warning before it saying the same).
  for (const char* dir : {"nothing has no run.json", "nothing2 has no run.json"}) {
    const auto at = r.err.find(dir);
    EXPECT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(dir, at + 1), std::string::npos) << r.err;
  }
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace r1dist::test
