// `r1dist sweep plan` and `sweep status` end to end on the tiny model: a good grid is checked
// and written (configs that the trainer loads, the manifest, points.tsv); a point that cannot
// run (a missing model directory, a batch larger than the data) stops the whole plan before
// anything is written, naming the point and the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/process.h"
#include "support/temp.h"
#include "trainer_runs.h"

namespace r1dist::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string grid_sweep(const TempDir& tmp, const std::string& models_line) {
  const auto cfg = run_config(tmp / "base", 1, 1, 4);
  const auto path = tmp / "g.sweep.toml";
  write_text(path, "[sweep]\nconfig = \"" + cfg + "\"\nout = \"" + (tmp / "out") + "\"\n[grid]\n" + models_line +
                       "train.lr = [1e-3, 2e-3]\n");
  return path;
}

TEST(SweepCli, PlansAGridAndShowsItsStatus) {
  TempDir tmp;
  const auto sweep = grid_sweep(tmp, "lora.r = [4, 8]\n");
  auto r = run_r1dist("sweep plan " + sweep + " --ranks 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("r4-lr1e-03"));
  EXPECT_THAT(r.out, HasSubstr("r8-lr2e-03"));
  EXPECT_THAT(r.out, HasSubstr("base-tiny"));
  EXPECT_THAT(r.out, HasSubstr("plan: " + (tmp / "out")));
  // The written config is one the trainer runs as it is.
  r = run_r1dist("--cfg " + (tmp / "out/configs/r8-lr2e-03.toml") + " --dry-run");
  EXPECT_EQ(r.code, 0) << r.err;
  r = run_r1dist("sweep status " + (tmp / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("5 points: 5 not started"));
  r = run_r1dist("sweep frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown action 'frobnicate'"));
}

TEST(SweepCli, APointThatCannotRunStopsThePlanNamingThePointAndKey) {
  TempDir tmp;
  // A model directory that does not exist, as the second model of the grid.
  const auto sweep = grid_sweep(tmp, "model.path = [\"" + tiny_model_dir() + "\", \"" + (tmp / "no-model") + "\"]\n");
  auto r = run_r1dist("sweep plan " + sweep);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("points cannot run; no plan was written"));
  EXPECT_THAT(r.err, HasSubstr("g.sweep.toml:4 (point model-lr1e-03): model.path = \"" + (tmp / "no-model") + "\""));
  EXPECT_THAT(r.err, HasSubstr("config.json"));
  EXPECT_FALSE(exists(tmp / "out/sweep.json"));
  EXPECT_FALSE(exists(tmp / "out/points.tsv"));
  // A global batch larger than the training rows at the given rank count.
  const auto big = grid_sweep(tmp, "train.micro_batch = [1, 64]\n");
  r = run_r1dist("sweep plan " + big + " --ranks 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("(point mb64-lr1e-03): train.micro_batch x train.grad_accum x ranks = 64 x 1 x 2"));
  EXPECT_THAT(r.err, Not(HasSubstr("point mb1-")));
  // A memory estimate above the GPU size given.
  r = run_r1dist("sweep plan " + grid_sweep(tmp, "lora.r = [8]\n") + " --gpu-memory-gb 0.001");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("a GPU of 0.001 GB"));
  // An eval.mcq_path that the run would only meet at its end.
  r = run_r1dist("sweep plan " + grid_sweep(tmp, "lora.r = [8]\n") + " --set eval.mcq_path=" + (tmp / "none.jsonl"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("eval.mcq_path = \"" + (tmp / "none.jsonl") + "\": " + (tmp / "none.jsonl") +
                               ": cannot read the data file"));
}

}  // namespace
}  // namespace r1dist::test
