// train.epochs (the steps it implies drive the schedule, the progress and the checkpoints) and
// early stopping on held-out loss (eval.patience: the best checkpoint becomes the adapter).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "e2e/trainer_runs.h"
#include "r1dist/formats/safetensors.h"
#include "support/process.h"
#include "support/temp.h"

namespace r1dist::test {
namespace {

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "output: " << (msg)

// run_config without its train.steps line.
std::string config_without_steps(const std::string& out, int micro, int accum) {
  const std::string path = run_config(out, micro, accum);
  std::string text = read_text(path);
  const auto at = text.find("steps = 10\n");
  EXPECT_NE(at, std::string::npos);
  text.erase(at, std::string("steps = 10\n").size());
  write_text(path, text);
  return path;
}

TEST(TrainerEpochs, TwoEpochsRunTheirStepsAndTheScheduleEndsThere) {
  TempDir d;
  const auto out = d / "epochs";
  // 24 rows, 4 held out: 20 training rows at 2 x 4 rows per step: ceil(2 x 20 / 8) = 5 steps.
  const std::string epochs = " --set train.epochs=2 --set data.n_samples=24 --set output.save_every=2";
  const auto cfg = config_without_steps(out, 2, 4);
  const auto r = run_r1dist("--cfg " + cfg + epochs);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_HAS(r.err + r.out, "train.epochs = 2: 20 training rows at 8 rows per step -> 5 steps");
  EXPECT_HAS(r.err + r.out, "done: 5 of 5 steps");
  const auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 5u);
  EXPECT_EQ(m.steps.back().step, 5);
  // Linear decay over 5 steps after 2 of warmup: step s trains at lr_at(s - 1), the last at
  // 2e-3 x (5 - 4) / (5 - 2).
  EXPECT_DOUBLE_EQ(m.steps[1].lr, 1e-3);
  EXPECT_DOUBLE_EQ(m.steps.back().lr, 2e-3 * 1.0 / 3.0);
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  EXPECT_EQ(m.evals.back().step, 5);

  // Killed at step 4 (the last checkpoint is step 2), resumed: the same 5 steps, bitwise.
  const auto killed = d / "killed";
  const auto kcfg = config_without_steps(killed, 2, 4);
  auto k = run_r1dist("--cfg " + kcfg + epochs, Launch{0, "R1DIST_FAULT=kill:rank=0:step=4"});
  EXPECT_NE(k.code, 0);
  EXPECT_EQ(find_latest_checkpoint(killed), checkpoint_path(killed, 2));
  k = run_r1dist("--cfg " + kcfg + epochs + " --resume auto");
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_HAS(k.err + k.out, "done: 5 of 5 steps");
  expect_bitwise_equal(read_checkpoint(checkpoint_path(killed, 5)), read_checkpoint(checkpoint_path(out, 5)),
                       "epochs: killed at 4, resumed");
  const auto km = read_metrics(killed + "/metrics.h5");
  ASSERT_EQ(km.steps.size(), 5u);
  EXPECT_DOUBLE_EQ(km.steps.back().lr, m.steps.back().lr);

  // Both lengths at once are refused, naming both.
  const auto both = run_r1dist("--cfg " + run_config(d / "both", 2, 4) + " --set train.epochs=2");
  EXPECT_EQ(both.code, 2);
  EXPECT_HAS(both.err, "train.epochs and train.steps both set the length of the run");
}

TEST(TrainerEarlyStop, PatienceStopsAnOverfittingRunAndExportsTheBestCheckpoint) {
  TempDir d;
  const auto out = d / "overfit";
  // A learning rate far too high for the tiny model: the held-out loss soon stops improving.
  const auto cfg = run_config(out, 2, 2, 40);
  const auto r = run_r1dist("--cfg " + cfg +
                            " --set train.lr=0.05 --set eval.every_steps=1 --set eval.patience=2 --set train.warmup_steps=0");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto m = read_metrics(out + "/metrics.h5");
  ASSERT_TRUE(m.counters.count("stopped_at_step")) << "the run did not stop early:\n" << r.err;
  const int64_t stopped = m.counters.at("stopped_at_step");
  EXPECT_LT(stopped, 40);
  EXPECT_HAS(m.attrs.at("stop_reason"), "eval.patience: 2 evaluations without the held-out loss improving");
  EXPECT_HAS(r.err + r.out, "early stop after step " + std::to_string(stopped));
  EXPECT_EQ(int64_t(m.steps.size()), stopped);

  // The best evaluation (after step 0, which is the base model) and the two after it.
  int64_t best_step = -1;
  double best = INFINITY;
  for (const auto& e : m.evals)
    if (e.step > 0 && e.eval_loss < best) best = e.eval_loss, best_step = e.step;
  ASSERT_GT(best_step, 0);
  EXPECT_EQ(best_step, stopped - 2) << "patience 2: the run ends two evaluations after its best";

  const auto best_ckpt = read_checkpoint(checkpoint_path(out, best_step));
  const auto last_ckpt = read_checkpoint(checkpoint_path(out, stopped));
  const auto exported = adapter_values(out + "/adapter", best_ckpt);
  EXPECT_EQ(exported, adapters_of(best_ckpt)) << "the adapter is not the best checkpoint's";
  EXPECT_NE(exported, adapters_of(last_ckpt)) << "the adapter is the last step's, not the best's";

  // The stop is the run's end: --resume auto (a sweep planned again) trains no further, and an
  // adapter lost afterwards is exported again from the best checkpoint.
  const std::string again = " --set train.lr=0.05 --set eval.every_steps=1 --set eval.patience=2 "
                            "--set train.warmup_steps=0 --resume auto";
  auto k = run_r1dist("--cfg " + cfg + again);
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_HAS(k.err + k.out, "nothing to do: the run ended at step " + std::to_string(stopped) +
                                " of 40 (eval.patience: 2 evaluations");
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, stopped));
  std::filesystem::remove_all(out + "/adapter");
  k = run_r1dist("--cfg " + cfg + again);
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_EQ(adapter_values(out + "/adapter", best_ckpt), adapters_of(best_ckpt)) << "exported again: the best's";
  EXPECT_EQ(int64_t(read_metrics(out + "/metrics.h5").steps.size()), stopped);
}

// eval.max_kl: the drift stop is recorded (metrics.h5, the JSON result) and ends the run.
TEST(TrainerEarlyStop, ADriftStopIsRecordedAndEndsTheRun) {
  TempDir d;
  const auto out = d / "drift";
  const auto cfg = run_config(out, 1, 2, 10);
  const std::string sets = " --set eval.every_steps=2 --set eval.max_kl=1e-9";
  auto r = run_r1dist("--cfg " + cfg + sets + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto m = read_metrics(out + "/metrics.h5");
  ASSERT_TRUE(m.counters.count("stopped_at_step")) << r.err;
  EXPECT_EQ(m.counters.at("stopped_at_step"), 2);
  EXPECT_HAS(m.attrs.at("stop_reason"), "eval.max_kl: the drift KL ");
  EXPECT_HAS(r.out, "\"stop_reason\": \"eval.max_kl: the drift KL ");
  r = run_r1dist("--cfg " + cfg + sets + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_HAS(r.err + r.out, "nothing to do: the run ended at step 2 of 10 (eval.max_kl");
  EXPECT_EQ(read_metrics(out + "/metrics.h5").steps.size(), 2u);
}

}  // namespace
}  // namespace r1dist::test
