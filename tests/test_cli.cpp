// The r1dist binary end to end: exit codes (0 ok, 2 usage/config, 1 runtime), messages, and
// `score` against the transformers reference.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "r1dist/safetensors.h"
#include "r1dist/tensor_bytes.h"
#include "test_util.h"

namespace r1dist {
namespace {

using test::run_r1dist;
using test::TempDir;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Cli, HelpAndUsageErrors) {
  auto r = run_r1dist("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "init-model")) << r.out;
  EXPECT_TRUE(contains(r.out, "score")) << r.out;
  EXPECT_EQ(run_r1dist("").code, 2);
  r = run_r1dist("frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "unknown command 'frobnicate'")) << r.err;
  r = run_r1dist("score --model x");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--ids is required")) << r.err;
  r = run_r1dist("score --model x --ids y --bogus 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(run_r1dist("score --help").code, 0);
}

TEST(Cli, ConfigErrorsExitTwoWithFileLineAndSuggestion) {
  TempDir tmp;
  test::write_text(tmp / "bad.toml", "[model]\npath = \"m\"\n\n[train]\nlearning_rate = 1e-4\n");
  auto r = run_r1dist("--cfg " + (tmp / "bad.toml") + " --dry-run");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "bad.toml:5")) << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean 'train.lr'")) << r.err;
  r = run_r1dist("--cfg " + (tmp / "none.toml"));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "none.toml")) << r.err;
  r = run_r1dist("--cfg " + (tmp / "bad.toml") + " --set train.lrr=1");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--set train.lrr=1")) << r.err;
}

TEST(Cli, DryRunLoadsTheModelAndWritesTheRunLog) {
  TempDir tmp;
  test::write_text(tmp / "ok.toml", "[model]\npath = \"" + test::fixture("qwen2_b") +
                                        "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n[output]\ndir = \"" + (tmp / "run") + "\"\n");
  auto r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run");
  EXPECT_EQ(r.code, 0) << r.err;
  const auto log = test::read_text(tmp / "run/run.log");
  EXPECT_TRUE(contains(log, "3 layers, hidden 48")) << log;
  EXPECT_TRUE(contains(log, "dry run")) << log;
  // qwen2_b: 3 layers, hidden 48, kv 16, intermediate 96; r=16 on all seven projections.
  EXPECT_TRUE(contains(log, "base nf4, 36096 adapter parameters in one flat buffer")) << log;
  // A runtime failure (a shard gone) exits 1 and names the shard.
  TempDir broken;
  copy_tree(test::fixture("qwen2_b"), broken / "m");
  std::filesystem::remove(broken / "m/model-00002-of-00006.safetensors");
  r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set model.path=" + (broken / "m"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "model-00002-of-00006.safetensors")) << r.err;
}

TEST(Cli, ScoreMatchesTheTransformersLoss) {
  const auto dir = test::fixture("qwen2_a");
  auto ref = st::File::open(dir + "/reference.safetensors");
  auto ids = tensor_from_bytes(ref.at("input_ids"), ref.data(ref.at("input_ids"))).clone();
  nlohmann::json seqs = nlohmann::json::array();
  for (int64_t b = 0; b < ids.size(0); ++b) {
    auto row = ids[b].contiguous();
    seqs.push_back(std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel()));
  }
  TempDir tmp;
  test::write_text(tmp / "ids.json", seqs.dump());
  auto r = run_r1dist("score --model " + dir + " --ids " + (tmp / "ids.json") + " --device cpu --dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  auto out = nlohmann::json::parse(r.out);
  ASSERT_EQ(out["sequences"].size(), 2u);
  double mean = 0;
  for (auto& s : out["sequences"]) {
    EXPECT_EQ(s["logprobs"].size(), size_t(ids.size(1) - 1));
    double sum = 0;
    for (auto& lp : s["logprobs"]) sum += lp.get<double>();
    EXPECT_NEAR(s["mean_nll"].get<double>(), -sum / s["logprobs"].size(), 1e-9);
    mean += s["mean_nll"].get<double>() / 2;
  }
  // Equal lengths: the mean of the per-row means is HF's loss over the batch.
  const auto& li = ref.at("loss");
  EXPECT_NEAR(mean, tensor_from_bytes(li, ref.data(li)).item<double>(), 1e-5);
}

TEST(Cli, ScoreRejectsBadIdsWithTheirPosition) {
  TempDir tmp;
  test::write_text(tmp / "ids.json", "[[1, 2, 3], [4, 99999]]");
  auto r = run_r1dist("score --model " + test::fixture("qwen2_a") + " --ids " + (tmp / "ids.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "sequence 1, position 1: id 99999 is outside the model's vocabulary [0, 320)")) << r.err;
  test::write_text(tmp / "short.json", "[[5]]");
  r = run_r1dist("score --model " + test::fixture("qwen2_a") + " --ids " + (tmp / "short.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "at least 2")) << r.err;
  r = run_r1dist("score --model " + (tmp / "nomodel") + " --ids " + (tmp / "ids.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "config.json")) << r.err;
}

}  // namespace
}  // namespace r1dist
