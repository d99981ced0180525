// Whole training runs under `mpirun -np 2` on the tiny model: data-parallel equivalence,
// exact resume, crash safety. The uninterrupted reference run and the tiny model are shared
// fixtures (tests/e2e/trainer_runs.h), built once per test run by Fixture.* (CTest
// FIXTURES_SETUP); every test that launches MPI holds the "mpi" resource lock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "e2e/trainer_runs.h"
#include "support/damage.h"

namespace r1dist::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The fixtures' setup tests: ctest runs them (fresh) before the tests that need them.
TEST(Fixture, TinyModel) {
  const auto dir = tiny_model_dir(/*rebuild=*/true);
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.json"));
}

TEST(Fixture, ReferenceRun) {
  const auto ref = reference_run(/*rebuild=*/true);
  EXPECT_EQ(ref.final_state.step, 10);
  EXPECT_EQ(ref.final_state.world_size, 2);
}

TEST(TrainerMpi, EightRanksEqualOneRankPackedAndPaddedAfterAKilledRankAndResume) {
  // `mpirun -np 8` (oversubscribed on a small machine) against one rank with 8 micro-batches:
  // the same global batch of 8 rows per step, at the recipe's learning rate (2e-4). The
  // micro-batch gradients are equal in both layouts; only the order of the fp32 sums differs
  // (a tree over 8 ranks against 8 accumulations on one), and AdamW carries that rounding
  // into the adapters: equal to 1e-5 relative, not bitwise. Packed, the 8 ranks also lay out
  // different sequences (rows are balanced over the ranks before packing): the loss is the
  // same sum over the same rows, so the same tolerance holds. The padded 8-rank run loses
  // rank 5 after step 3 and resumes from step 2 on 8 ranks (bitwise resume itself is shown
  // at 2 ranks: KilledRankEndsTheJobAndResumeFinishesIt). Three steps: the first at lr 0
  // (warmup), then two that move the adapters, the last one after the resume.
  TempDir d;
  const int kSteps = 3;
  const std::string quick = " --set train.lr=2e-4 --set eval.every_steps=0 --set output.save_every=2";
  // Rows of up to 400 tokens (at 96 every row is cut to the same length and packs alone).
  const std::string packed = " --set data.packing=true --set data.max_seq_len=400";
  struct Case {
    std::string name, sets;
  };
  for (const Case& c : {Case{"packed", packed}, Case{"padded", " --set data.packing=false"}}) {
    const auto eight_out = d / ("eight_" + c.name), one_out = d / ("one_" + c.name);
    const auto eight_cfg = run_config(eight_out, 1, 1, kSteps) + quick + c.sets;
    if (c.name == "padded") {
      auto k = run_r1dist("--cfg " + eight_cfg, Launch{8, "R1DIST_FAULT=kill:rank=5:step=3"});
      EXPECT_NE(k.code, 0);
      EXPECT_EQ(find_latest_checkpoint(eight_out), checkpoint_path(eight_out, 2));
      k = run_r1dist("--cfg " + eight_cfg + " --resume auto", Launch{8});
      ASSERT_EQ(k.code, 0) << k.err;
      EXPECT_NE(read_text(eight_out + "/run.log").find("resumed from"), std::string::npos);
    } else {
      auto r = run_r1dist("--cfg " + eight_cfg, Launch{8});
      ASSERT_EQ(r.code, 0) << r.err;
    }
    auto r = run_r1dist("--cfg " + run_config(one_out, 1, 8, kSteps) + quick + c.sets);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto eight = read_checkpoint(checkpoint_path(eight_out, kSteps));
    const auto one = read_checkpoint(checkpoint_path(one_out, kSteps));
    EXPECT_EQ(one.world_size, 1);
    EXPECT_EQ(eight.world_size, 8);
    const double err = max_rel_err(adapters_of(one), adapters_of(eight), 1e-5,
                                   c.name + " adapters: 1 rank x accum 8 vs 8 ranks x accum 1");
    std::printf("%s: adapter max rel err, 1 rank vs 8 ranks after %d steps at lr 2e-4: %.3g\n", c.name.c_str(), kSteps,
                err);
    // The adapters moved: the comparison is not between two initial states.
    const auto a2 = adapters_of(read_checkpoint(checkpoint_path(one_out, 2))), last = adapters_of(one);
    double moved = 0;
    for (size_t i = 0; i < a2.size(); ++i) moved = std::max(moved, std::abs(double(a2[i]) - double(last[i])));
    EXPECT_GT(moved, 1e-5) << c.name;
    auto m1 = read_metrics(one_out + "/metrics.h5"), m8 = read_metrics(eight_out + "/metrics.h5");
    ASSERT_EQ(m1.steps.size(), size_t(kSteps));
    ASSERT_EQ(m8.steps.size(), size_t(kSteps));
    for (size_t i = 0; i < size_t(kSteps); ++i) {
      EXPECT_EQ(m8.steps[i].step, int64_t(i + 1)) << c.name;
      EXPECT_NEAR(m1.steps[i].loss, m8.steps[i].loss, 1e-5) << c.name << ", step " << i + 1;
      EXPECT_EQ(m1.steps[i].real_tokens, m8.steps[i].real_tokens) << c.name << ", step " << i + 1;
    }
  }
}

// transformers' linear schedule for lr 2e-3, 2 warmup steps, 10 steps.
const double kLinearLr[10] = {0, 1e-3, 2e-3, 1.75e-3, 1.5e-3, 1.25e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4};

TEST(TrainerMpi, LossGoesDownOnTheBundledSample) {
  const auto ref = reference_run();
  ASSERT_GE(ref.metrics.evals.size(), 2u);
  const auto& first = ref.metrics.evals.front();
  const auto& last = ref.metrics.evals.back();
  EXPECT_EQ(first.step, 0);
  EXPECT_EQ(last.step, 10);
  EXPECT_NEAR(first.kl, 0.0, 1e-6) << "at step 0 the adapted model is the base model";
  EXPECT_LT(last.eval_loss, first.eval_loss - 0.05) << "held-out loss did not drop";
  EXPECT_GT(last.kl, 0.0);
  // Every step is in the metrics file, in order, with its learning rate.
  ASSERT_EQ(ref.metrics.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(ref.metrics.steps[i].step, int64_t(i + 1));
    EXPECT_DOUBLE_EQ(ref.metrics.steps[i].lr, kLinearLr[i]) << "step " << i + 1;
    EXPECT_GT(ref.metrics.steps[i].tokens, 0);
  }
}

TEST(TrainerMpi, StopAndResumeIsBitwiseIdentical) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "resumed";
  const auto cfg = run_config(out, 1, 2);
  auto r = run_r1dist("--cfg " + cfg + " --stop-after 5", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = run_r1dist("--cfg " + cfg + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "2 ranks, stop at 5, resume");
  auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
}

// Two runs on one output.dir (a sweep submitted twice, a manual run beside an array task):
// the second refuses at once naming the first, which ends as if it had been alone.
TEST(TrainerMpi, ASecondRunOnTheSameDirectoryRefusesAndTheFirstIsUntouched) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "locked";
  const auto cfg = run_config(out, 1, 2);
  const std::string mpirun = "mpirun -np 2 " + std::string(R1DIST_BINARY) + " --cfg " + cfg;
  const std::string second = std::string(R1DIST_BINARY) + " --cfg " + cfg;
  // The first in the background; once it holds the lock, the second, timed.
  const auto r = run_command("bash -c '" + mpirun + " > " + (d / "first.log") + " 2>&1 & first=$!; " +
                             "for i in $(seq 300); do grep -qs r1dist " + out +
                             "/.r1dist.lock && break; sleep 0.1; done; t0=$(date +%s%N); " + second + " > " +
                             (d / "second.log") + " 2>&1; echo second=$?; " +
                             "echo ms=$(( ($(date +%s%N) - t0) / 1000000 )); wait $first; echo first=$?'");
  ASSERT_NE(r.out.find("first=0"), std::string::npos) << r.out << read_text(d / "first.log");
  EXPECT_NE(r.out.find("second=2"), std::string::npos) << r.out;
  // Not a timing assertion (a loaded machine must not decide the test): the time is printed.
  const auto at = r.out.find("ms=");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::printf("[ refusal  ] the second run was refused after %ld ms\n", std::stol(r.out.substr(at + 3)));
  const auto why = read_text(d / "second.log");
  EXPECT_NE(why.find("is in use by another run (host "), std::string::npos) << why;
  EXPECT_NE(why.find("pid "), std::string::npos) << why;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "the first run, beside a refused second");
  EXPECT_EQ(read_metrics(out + "/metrics.h5").steps.size(), 10u);
}

TEST(TrainerMpi, ResumeOnADifferentWorldSize) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "w2to1";
  auto r = run_r1dist("--cfg " + run_config(out, 1, 2) + " --stop-after 5", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  // Same global batch (4 rows) on one rank: grad_accum 4.
  r = run_r1dist("--cfg " + run_config(out, 1, 4) + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto s = read_checkpoint(checkpoint_path(out, 10));
  EXPECT_EQ(s.world_size, 1);
  max_rel_err(adapters_of(s), adapters_of(ref.final_state), 1e-6, "adapters after 2 -> 1 rank resume");
  max_rel_err(s.adam_v, ref.final_state.adam_v, 1e-5, "exp_avg_sq after 2 -> 1 rank resume");
  // A different global batch is refused with the arithmetic that fixes it.
  r = run_r1dist("--cfg " + run_config(out, 1, 2) + " --resume auto --set train.steps=12");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("global batch: 4 rows -> 2 rows"));
}

TEST(TrainerMpi, KilledRankEndsTheJobAndResumeFinishesIt) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "killed";
  const auto cfg = run_config(out, 1, 2);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_r1dist("--cfg " + cfg + " --tensorboard", Launch{2, "R1DIST_FAULT=kill:rank=1:step=7"});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.code, 0);
  EXPECT_LT(secs, 120) << "the job did not end promptly after a rank died";
  // Every step completed before the kill is in the metrics file (steps 1..6 at least), and
  // in the TensorBoard events (the ones after the checkpoint at 5 are trained again).
  auto m = read_metrics(out + "/metrics.h5");
  ASSERT_GE(m.steps.size(), 6u);
  for (size_t i = 0; i < m.steps.size(); ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
  EXPECT_GE(tensorboard_steps(out).back(), 6);
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = run_r1dist("--cfg " + cfg + " --resume auto --set output.tensorboard=true", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "kill at 7, resume");
  m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
  // Evals at 0, 5 and 10, steps 1-10: each once, in order, equal to metrics.h5.
  EXPECT_EQ(tensorboard_steps(out), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10}));
  expect_tensorboard_equals_metrics(out);
}

TEST(TrainerMpi, KillDuringACheckpointWriteKeepsTheLastGoodOne) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "killed_ckpt";
  const auto cfg = run_config(out, 1, 2);
  auto r = run_r1dist("--cfg " + cfg, Launch{2, "R1DIST_FAULT=kill_in_checkpoint:step=10"});
  EXPECT_NE(r.code, 0);
  // The step-10 file never appeared; step 5 is intact and is what auto-resume picks.
  EXPECT_FALSE(checkpoint_is_valid(checkpoint_path(out, 10)));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = run_r1dist("--cfg " + cfg + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "kill in checkpoint, resume");
}

TEST(TrainerMpi, NonFiniteLossStopsWithTheStepAndKeepsTheLastCheckpoint) {
  TempDir d;
  const auto out = d / "nan";
  // Rank 1's loss of step 7 becomes NaN; the gradient sum carries it to every rank.
  auto r = run_r1dist("--cfg " + run_config(out, 1, 2), Launch{2, "R1DIST_FAULT=nan_loss:rank=1:step=7"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("non-finite loss at step 7"));
  EXPECT_THAT(r.err, HasSubstr("the last good checkpoint is")) << "names it";
  EXPECT_THAT(r.err, HasSubstr("step_00000005.h5"));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  EXPECT_FALSE(std::filesystem::exists(checkpoint_path(out, 7)));
}

// What a scheduler does (Slurm: preemption, requeue, scancel --signal, the time limit): a
// SIGTERM to one rank mid-step. Every rank finishes that step, rank 0 checkpoints it (not the
// last save_every multiple; written in the background, complete before the exit), the metrics
// file is closed, every rank exits 75 (rank 0's --json says so), and the resume ends bitwise
// equal to the uninterrupted run.
TEST(TrainerMpi, StopSignalCheckpointsThatStepAndTheResumeIsBitwiseIdentical) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "signal";
  const auto cfg = run_config(out, 1, 2);
  auto r = run_r1dist("--cfg " + cfg + " --json", Launch{2, "R1DIST_FAULT=signal:rank=1:step=7"});
  EXPECT_EQ(r.code, 75) << r.err;
  EXPECT_THAT(r.err, HasSubstr("stop signal received"));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 7));
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["exit_code"], 75);
  EXPECT_EQ(j["stopped_by"], "signal");
  EXPECT_EQ(j["steps_done"], 7);
  EXPECT_EQ(j["last_checkpoint"], checkpoint_path(out, 7));
  EXPECT_GT(j["time_split"]["checkpoints"]["seconds"].get<double>(), 0);
  auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 7u);
  if (on_path("h5dump")) {
    const auto dump = run_command("h5dump -H " + out + "/metrics.h5");
    EXPECT_EQ(dump.code, 0) << "h5dump reads the metrics without h5clear:\n" << dump.err;
  }
  r = run_r1dist("--cfg " + cfg + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "signal at 7, resume");
  m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
  // Both attempts are in the run log.
  const auto log = read_text(out + "/run.log");
  EXPECT_THAT(log, HasSubstr("stopped by a signal"));
  EXPECT_THAT(log, HasSubstr("resumed from"));
}

// Damage in the newest checkpoint (one changed bit in one adapter's data, written where HDF5
// keeps it): `checkpoint verify` names it, the resume skips it with a warning naming the
// tensor, continues from the previous checkpoint and ends bitwise equal to the uninterrupted run.
TEST(TrainerMpi, ADamagedNewestCheckpointIsSkippedAndTheResumeIsBitwiseIdentical) {
  const auto ref = reference_run();
  TempDir d;
  const auto out = d / "damaged";
  const auto cfg = run_config(out, 1, 2);
  auto r = run_r1dist("--cfg " + cfg + " --stop-after 7", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto newest = checkpoint_path(out, 7);
  const auto victim = read_checkpoint(newest).adapters.at(3).name;
  flip_bit_in_dataset(newest, "/adapters/" + victim, 0.37, 4);
  r = run_r1dist("checkpoint verify " + out);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("DAMAGED  " + newest));
  EXPECT_THAT(r.out, HasSubstr("/adapters/" + victim + " is damaged"));
  EXPECT_THAT(r.out, HasSubstr("ok       " + checkpoint_path(out, 5)));
  r = run_r1dist("--cfg " + cfg + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("skipping " + newest));
  EXPECT_THAT(r.err, HasSubstr(victim + " is damaged"));
  EXPECT_THAT(r.err, HasSubstr("resumed from " + checkpoint_path(out, 5)));
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "damaged step 7 skipped");
  const auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
  // The metrics file describes itself: the run's config, typed counters.
  EXPECT_EQ(m.format_version, kMetricsFormatVersion);
  EXPECT_THAT(m.config_toml, HasSubstr("[lora]"));
  EXPECT_EQ(m.counters.at("world_size"), 2);
  EXPECT_GT(m.counters.at("train_rows"), 0);
  // checkpoint-diff names the tensor whose moments differ most (through /optimizer/layout).
  r = run_r1dist("checkpoint-diff " + checkpoint_path(out, 10) + " " + checkpoint_path(out, 5));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(max rel diff); worst tensor base_model.model.model.layers."));
  // Rank 0 alone reads the candidates; its refusal reaches rank 1 at once (no rank waits on
  // the other until the watchdog).
  const auto t0 = std::chrono::steady_clock::now();
  r = run_r1dist("--cfg " + cfg + " --resume auto --set train.lr=1e-3", Launch{2});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("no checkpoint matches this run's settings"));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 50.0);
  // The exported adapter names its base by hub id (here the directory's name: the tiny
  // model's config.json has no hub _name_or_path), not by the path it was trained from, and
  // carries a model card; its manifest covers both.
  const auto adapter_config = nlohmann::json::parse(read_text(out + "/adapter/adapter_config.json"));
  EXPECT_EQ(adapter_config["base_model_name_or_path"], "tiny");
  const auto card = read_text(out + "/adapter/README.md");
  EXPECT_EQ(card.rfind("---\nbase_model: \"tiny\"\nlibrary_name: peft\n", 0), 0u) << card;
  const auto run_json = nlohmann::json::parse(read_text(out + "/run.json"));
  EXPECT_THAT(card, HasSubstr(run_json["rows_fingerprint"].get<std::string>()));
  EXPECT_THAT(card, HasSubstr("| final | 10 |"));
  EXPECT_THAT(card, HasSubstr("```toml\n[model]"));
  EXPECT_THAT(read_text(out + "/adapter/r1dist_manifest.json"), HasSubstr("README.md"));
  // The exported adapter carries a manifest; a changed byte in it is refused by name.
  r = run_r1dist("checkpoint verify " + out + "/adapter");
  EXPECT_EQ(r.code, 0) << r.out;
  flip_byte_in_file(out + "/adapter/README.md", 0.5);
  flip_byte_in_file(out + "/adapter/adapter_model.safetensors", 0.8);
  r = run_r1dist("checkpoint verify " + out + "/adapter");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("README.md is damaged"));
  EXPECT_THAT(r.out, HasSubstr("adapter_model.safetensors is damaged"));
}

// A resume whose settings differ from the checkpoint's lists every changed key and refuses;
// --resume-anyway KEY accepts exactly those keys and records them in metrics.h5. A
// checkpoint of other settings placed newest is skipped for the newest of this run's. A
// missing metrics.h5 refuses the resume rather than start a history in the middle.
TEST(TrainerMpi, AResumeWithOtherSettingsListsEachChangedKey) {
  TempDir d;
  const auto out = d / "changed";
  const auto cfg = run_config(out, 1, 4);
  auto r = run_r1dist("--cfg " + cfg + " --stop-after 5");
  ASSERT_EQ(r.code, 0) << r.err;
  write_text(d / "other.jsonl", read_text(sample_data()).substr(0, read_text(sample_data()).rfind('\n', 60000) + 1));
  const std::string changed =
      " --set train.lr=1e-3 --set lora.alpha=32 --set data.path=" + (d / "other.jsonl");
  r = run_r1dist("--cfg " + cfg + " --resume auto" + changed);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("train.lr: 0.002 -> 0.001"));
  EXPECT_THAT(r.err, HasSubstr("lora.alpha: 16 -> 32"));
  EXPECT_THAT(r.err, HasSubstr("data: rows fingerprint "));
  EXPECT_THAT(r.err, HasSubstr("--resume-anyway"));
  r = run_r1dist("--cfg " + cfg + " --resume auto --resume-anyway train.lr" + changed);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("train.lr: ")));
  EXPECT_THAT(r.err, HasSubstr("lora.alpha: 16 -> 32"));
  // A missing metrics file: refused, named.
  std::filesystem::rename(out + "/metrics.h5", d / "metrics.keep");
  r = run_r1dist("--cfg " + cfg + " --resume auto");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("metrics.h5 is missing"));
  std::filesystem::rename(d / "metrics.keep", out + "/metrics.h5");
  // Accepted on purpose: one more step at another lr, recorded.
  r = run_r1dist("--cfg " + cfg + " --resume auto --resume-anyway train.lr --set train.lr=1e-3 --stop-after 6");
  ASSERT_EQ(r.code, 0) << r.err;
  auto m = read_metrics(out + "/metrics.h5");
  EXPECT_EQ(m.attrs["resume_anyway.5.train.lr"], "0.002 -> 0.001");
  // Back to the first settings: step 6 (another lr) is skipped for step 5.
  r = run_r1dist("--cfg " + cfg + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("skipping " + checkpoint_path(out, 6) + ": written with other settings"));
  EXPECT_THAT(r.err, HasSubstr("resumed from " + checkpoint_path(out, 5)));
  m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  EXPECT_DOUBLE_EQ(m.steps[5].lr, kLinearLr[5]) << "step 6 is this run's again";
}

// data.packing = true trains on the same rows as the padded run (2 ranks x micro-batch 2,
// rows of 250-450 tokens, max_seq_len 800: two or three rows per sequence): the same loss at
// every step to fp32 rounding, no padding, the same real tokens; a packed run stopped and
// resumed ends bitwise equal to the uninterrupted packed run; and a packed run may be resumed
// without packing (packing only moves work), the resume naming the change of layout.
TEST(TrainerMpi, PackingTrainsTheSameStepsAndResumesBitwise) {
  TempDir d;
  const auto padded = d / "padded", whole = d / "packed", stopped = d / "stopped", switched = d / "switched";
  const std::string rows = " --set data.max_seq_len=800 --set eval.every_steps=0";
  const std::string padded_rows = rows + " --set data.packing=false", packing = rows + " --set data.packing=true";
  auto r = run_r1dist("--cfg " + run_config(padded, 2, 1, 4) + padded_rows, Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_r1dist("--cfg " + run_config(whole, 2, 1, 4) + packing, Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto u = read_metrics(padded + "/metrics.h5"), p = read_metrics(whole + "/metrics.h5");
  ASSERT_EQ(u.steps.size(), 4u);
  ASSERT_EQ(p.steps.size(), 4u);
  double padding = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(p.steps[i].loss, u.steps[i].loss, 1e-5 * std::abs(u.steps[i].loss)) << "step " << i + 1;
    EXPECT_EQ(p.steps[i].tokens, u.steps[i].tokens) << "loss tokens, step " << i + 1;
    EXPECT_EQ(p.steps[i].real_tokens, u.steps[i].real_tokens) << "step " << i + 1;
    EXPECT_EQ(p.steps[i].slot_tokens, p.steps[i].real_tokens) << "a packed step has no padding";
    EXPECT_EQ(p.steps[i].padding_share, 0.0);
    EXPECT_GT(u.steps[i].slot_tokens, u.steps[i].real_tokens) << "rows of different lengths pad";
    padding += u.steps[i].padding_share / 4;
  }
  const auto packed_final = read_checkpoint(checkpoint_path(whole, 4));
  const double err = max_rel_err(adapters_of(packed_final), adapters_of(read_checkpoint(checkpoint_path(padded, 4))),
                                 1e-5, "adapters after 4 steps, packed vs padded");
  std::printf("packed vs padded, 4 steps at lr 2e-3: adapter max rel err %.3g; padded runs had %.1f%% padding\n",
              err, 100 * padding);
  const auto log = read_text(whole + "/run.log");
  EXPECT_NE(log.find(" slots/s, 0.0% pad)"), std::string::npos) << "progress reports slots/s and the padding share";
  EXPECT_NE(log.find("packing: step 1's 4 rows ("), std::string::npos) << "the run logs how step 1 packs";
  EXPECT_EQ(log.find("rank(s) idle"), std::string::npos) << "2 ranks, 2 or more sequences per step";
  const auto padded_log = read_text(padded + "/run.log");
  EXPECT_EQ(padded_log.find(" slots/s, 0.0% pad)"), std::string::npos) << "the padded run pads";

  r = run_r1dist("--cfg " + run_config(stopped, 2, 1, 4) + packing + " --stop-after 2", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  copy_tree(stopped, switched);
  r = run_r1dist("--cfg " + run_config(stopped, 2, 1, 4) + packing + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(stopped, 4)), packed_final, "packed, stop at 2, resume");
  r = run_r1dist("--cfg " + run_config(switched, 2, 1, 4) + padded_rows + " --resume auto", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("in another layout of the same steps")) << "the resume names the change";
  EXPECT_THAT(r.err, HasSubstr("data.packing: true -> false"));
  max_rel_err(adapters_of(read_checkpoint(checkpoint_path(switched, 4))), adapters_of(packed_final), 1e-5,
              "packed for 2 steps, then padded");
}

}  // namespace
}  // namespace r1dist::test
