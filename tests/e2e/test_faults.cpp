// Faults end to end, each as a probe of the product found it: a full disk, another model's
// weights under a resume, a NaN update, an export cut short, a rank that stops (SIGSTOP) at
// start-up, in a step or at a checkpoint, and inputs whose messages named the wrong thing.
// docs/RELIABILITY.md lists each with its outcome.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "e2e/trainer_runs.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/formats/safetensors.h"
#include "support/process.h"
#include "support/temp.h"

namespace r1dist::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A small tmpfs (root only): the real full disk. Unmounted when the object dies.
struct SmallDisk {
  std::string path;
  bool mounted = false;
  SmallDisk(const std::string& dir, const std::string& size) : path(dir) {
    std::filesystem::create_directories(dir);
    mounted = ::getuid() == 0 && ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  bool grow(const std::string& size) {
    return ::mount("tmpfs", path.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

// The disk fills while checkpoints are written (every step, 1.4 MB of disk): a clean error
// naming the file (once a segfault in HDF5's exit-time cleanup, exit 139), the last
// checkpoint intact, and a resume on a grown disk that finishes the run.
TEST(Faults, AFullDiskEndsWithAnErrorNamingTheFileNotACrash) {
  TempDir d;
  SmallDisk disk(d / "disk", "1400k");
  if (!disk.mounted) GTEST_SKIP() << "needs root to mount a small tmpfs (CI runs as root)";
  const auto out = disk.path + "/run";
  const auto cfg = run_config(out, 1, 2, 12);
  const std::string sets = " --set lora.r=20 --set output.save_every=1 --set output.keep=10";
  auto r = run_r1dist("--cfg " + cfg + sets);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("No space left on device"));
  EXPECT_THAT(r.err, HasSubstr("HINT: the disk is full"));
  EXPECT_THAT(r.err, Not(HasSubstr("Segmentation")));
  const auto last = find_latest_checkpoint(out);
  ASSERT_FALSE(last.empty()) << "some checkpoints fit before the disk filled";
  EXPECT_TRUE(checkpoint_is_valid(last));
  ASSERT_TRUE(disk.grow("64m"));
  r = run_r1dist("--cfg " + cfg + sets + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(run_r1dist("checkpoint verify " + out).code, 0);
}

// A resume must be of the same weights, not only of the same config.json: another model
// directory with the same config (other seed) is refused as "model", naming both
// fingerprints; --resume-anyway model accepts it.
TEST(Faults, AResumeOntoOtherWeightsWithTheSameConfigIsRefused) {
  TempDir d;
  const auto other = d / "other";
  auto r = run_r1dist("init-model --preset tiny --dtype fp32 --seed 2 --out " + other + " --tokenizer " +
                      std::string(R1DIST_TOKENIZER_DIR));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(read_text(other + "/config.json"), read_text(tiny_model_dir() + "/config.json"));
  const auto out = d / "run";
  const auto cfg = run_config(out, 1, 2, 4);
  r = run_r1dist("--cfg " + cfg + " --stop-after 2");
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_r1dist("--cfg " + cfg + " --resume auto --set model.path=" + other);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("model: " + tiny_model_dir() + " (weights fingerprint "));
  EXPECT_THAT(r.err, HasSubstr(other + " (weights fingerprint "));
  r = run_r1dist("--cfg " + cfg + " --resume auto --set model.path=" + other + " --resume-anyway model");
  EXPECT_EQ(r.code, 0) << r.err;
}

// An update that makes an adapter value NaN stops the run at that step, before any
// checkpoint or export holds it (once such adapters were checkpointed, called "the last
// good" and exported); an AdamW epsilon that underflows fp32 is refused up front.
TEST(Faults, ANonFiniteUpdateStopsBeforeAnyCheckpointOrExportHoldsIt) {
  TempDir d;
  const auto out = d / "nan";
  auto r = run_r1dist("--cfg " + run_config(out, 1, 2), Launch{2, "R1DIST_FAULT=nan_update:rank=1:step=7"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("the AdamW update of step 7 made adapter values non-finite"));
  EXPECT_THAT(r.err, HasSubstr("step_00000005.h5"));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  EXPECT_FALSE(std::filesystem::exists(checkpoint_path(out, 7)));
  EXPECT_FALSE(std::filesystem::exists(out + "/adapter"));
  r = run_r1dist("--cfg " + run_config(d / "eps", 1, 2) + " --set train.adam_eps=1e-300");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("train.adam_eps = 1e-300 underflows fp32"));
}

// Killed between the final checkpoint and the adapter's rename into place: no adapter/ (and
// no partial one), `checkpoint verify` says so, `eval --cfg` still opens the metrics file the
// killed SWMR writer left, and `--resume auto` exports the adapter from the final checkpoint.
TEST(Faults, AnExportCutShortIsReportedAndTheResumeCompletesIt) {
  TempDir d;
  const auto out = d / "run";
  const auto cfg = run_config(out, 1, 2, 6);
  auto r = run_r1dist("--cfg " + cfg, Launch{0, "R1DIST_FAULT_ATOMIC=/adapter"});
  EXPECT_NE(r.code, 0) << "killed";
  ASSERT_TRUE(checkpoint_is_valid(checkpoint_path(out, 6)));
  EXPECT_FALSE(std::filesystem::exists(out + "/adapter"));
  r = run_r1dist("checkpoint verify " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("MISSING  " + out + "/adapter: the run reached its final step 6"));
  r = run_r1dist("eval --cfg " + cfg + " --no-generate --set eval.mcq_path=" + source_dir() +
                 "/data/sample_mcq_en.jsonl --adapter " + checkpoint_path(out, 6));
  EXPECT_EQ(r.code, 0) << "a metrics.h5 left open by a killed writer: " << r.err;
  r = run_r1dist("--cfg " + cfg + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err + r.out, HasSubstr("exporting it from the checkpoint"));
  EXPECT_EQ(run_r1dist("checkpoint verify " + out).code, 0);
  const auto final_state = read_checkpoint(checkpoint_path(out, 6));
  EXPECT_TRUE(same_bits(adapter_values(out + "/adapter", final_state), adapters_of(final_state)));

  // A partial adapter (what a full disk left before exports were atomic): reported as
  // incomplete, and the resume replaces it.
  std::filesystem::remove(out + "/adapter/adapter_model.safetensors");
  std::filesystem::remove(out + "/adapter/r1dist_manifest.json");
  r = run_r1dist("checkpoint verify " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("INCOMPLETE " + out + "/adapter"));
  ASSERT_EQ(run_r1dist("--cfg " + cfg + " --resume auto").code, 0);
  EXPECT_EQ(run_r1dist("checkpoint verify " + out).code, 0);
}

// A kill during the final export keeps the adapter an earlier stop exported (--stop-after, a
// signal): verify calls it stale and the resume exports the final one. A kill during the final
// evaluation (eval.suite) leaves no /eval: verify names it and the resume evaluates. A finished
// run submitted again with other [eval] settings is evaluated again under them.
TEST(Faults, AStaleAdapterOrAMissingFinalEvaluationIsReportedAndTheResumeMakesIt) {
  TempDir d;
  const auto out = d / "run";
  const auto cfg = run_config(out, 1, 2, 6);
  const std::string suite = " --set eval.suite=true --set eval.max_new_tokens=4 --set 'eval.prompts=[\"hi\"]'";
  auto r = run_r1dist("--cfg " + cfg + suite + " --stop-after 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(adapter_exported_at(out + "/adapter"), 3);
  r = run_r1dist("--cfg " + cfg + suite + " --resume auto", Launch{0, "R1DIST_FAULT_ATOMIC=/adapter"});
  EXPECT_NE(r.code, 0) << "killed";
  ASSERT_TRUE(checkpoint_is_valid(checkpoint_path(out, 6)));
  EXPECT_EQ(adapter_exported_at(out + "/adapter"), 3) << "the earlier stop's adapter is left";
  r = run_r1dist("checkpoint verify " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("STALE    " + out + "/adapter: exported at step 3, but the run ended at step 6"));
  EXPECT_THAT(r.out, HasSubstr("MISSING  " + out + "/metrics.h5 /eval: the run ended at step 6 without its final "
                               "evaluation"));
  r = run_r1dist("--cfg " + cfg + suite + " --resume auto", Launch{0, "R1DIST_FAULT_ATOMIC=/metrics.h5"});
  EXPECT_NE(r.code, 0) << "killed while the /eval group is written:\n" << r.err;
  EXPECT_THAT(r.err + r.out, HasSubstr("exporting it from the checkpoint"));
  EXPECT_EQ(adapter_exported_at(out + "/adapter"), 6);
  EXPECT_FALSE(read_eval_group(out + "/metrics.h5").has_value());
  r = run_r1dist("checkpoint verify " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, Not(HasSubstr("STALE")));
  EXPECT_THAT(r.out, HasSubstr("MISSING  " + out + "/metrics.h5 /eval"));
  r = run_r1dist("--cfg " + cfg + suite + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err + r.out, HasSubstr("without its final evaluation (eval.suite): evaluating now"));
  EXPECT_THAT(r.err + r.out, Not(HasSubstr("exporting")));
  EXPECT_TRUE(read_eval_group(out + "/metrics.h5").has_value());
  EXPECT_EQ(run_r1dist("checkpoint verify " + out).code, 0);
  const auto final_state = read_checkpoint(checkpoint_path(out, 6));
  EXPECT_TRUE(same_bits(adapter_values(out + "/adapter", final_state), adapters_of(final_state)));
  r = run_r1dist("--cfg " + cfg + suite + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err + r.out, HasSubstr("nothing to do: the run ended at step 6 of 6"));
  // Submitted again with other [eval] settings: the final evaluation is made again under them
  // (and recorded with them), the adapter left as it is.
  const auto before = read_eval_group(out + "/metrics.h5");
  ASSERT_TRUE(before.has_value());
  EXPECT_THAT(before->settings, HasSubstr("max_new_tokens = 4"));
  r = run_r1dist("--cfg " + cfg + suite + " --set eval.max_new_tokens=3 --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err + r.out, HasSubstr("other [eval] settings (eval.max_new_tokens 4 -> 3): evaluating again"));
  EXPECT_THAT(r.err + r.out, Not(HasSubstr("exporting")));
  const auto after = read_eval_group(out + "/metrics.h5");
  ASSERT_TRUE(after.has_value());
  EXPECT_THAT(after->settings, HasSubstr("max_new_tokens = 3"));
  ASSERT_EQ(after->generations.size(), 1u);
  EXPECT_LE(after->generations[0].tokens, 3);
  // The same again, and a key that acts only during training: nothing to evaluate.
  r = run_r1dist("--cfg " + cfg + suite + " --set eval.max_new_tokens=3 --set eval.every_steps=2 --resume auto");
  EXPECT_THAT(r.err + r.out, HasSubstr("nothing to do: the run ended at step 6 of 6"));
  // --stop-after at or before the checkpoint's step: refused, not ignored.
  r = run_r1dist("--cfg " + cfg + suite + " --resume auto --stop-after 4");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--stop-after 4: the run is already at step 6"));
  // --resume naming no file: refused before anything loads.
  r = run_r1dist("--cfg " + cfg + " --resume " + (d / "none.h5"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--resume " + (d / "none.h5") + ": no such checkpoint file"));
  EXPECT_THAT(r.err, Not(HasSubstr("model: loading")));
}

// A rank that stops (SIGSTOP: the scheduler's suspend, a debugger, a hung driver) at
// start-up, in a step or at a checkpoint: every collective is under dist.timeout_s, so the
// job ends with the collective, the phase and the missing rank named, and the resume ends
// bitwise equal to the uninterrupted reference run.
TEST(Faults, ARankThatStopsEndsTheJobWithinTheDeadlineAndTheResumeIsBitwise) {
  const auto ref = reference_run();
  struct Case {
    const char* fault;
    const char* collective;
  };
  const Case cases[] = {
      {"stop_at_startup:rank=1", "MPI_Barrier after rank 0 tokenized the data (start-up)"},
      {"stop_in_step:rank=1:step=7", "MPI_Allreduce of the gradients (step 7)"},
      {"stop_in_checkpoint:rank=1:step=5", "MPI_Gather of the RNG states for the checkpoint (checkpoint of step 5)"},
  };
  const int timeout_s = 4;
  for (const auto& c : cases) {
    TempDir d;
    const auto out = d / "run";
    const auto cfg = run_config(out, 1, 2);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_r1dist("--cfg " + cfg + " --set dist.timeout_s=" + std::to_string(timeout_s),
                        Launch{2, std::string("R1DIST_FAULT=") + c.fault});
    const double secs = seconds_since(t0);
    std::printf("[ deadline ] %s: the job ended after %.1f s (dist.timeout_s = %d)\n", c.fault, secs, timeout_s);
    EXPECT_EQ(r.code, 1) << c.fault << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(std::string("rank 0: ") + c.collective + " did not finish within dist.timeout_s = 4 s: "
                                 "rank(s) 1 did not arrive"))
        << c.fault;
    // Not a timing assertion: a hang would never end (ctest's TIMEOUT is the backstop); the
    // measured time is printed above.
    EXPECT_LT(secs, timeout_s + 60) << c.fault;
    if (std::string(c.fault).rfind("stop_at_startup", 0) == 0) continue;  // nothing ran: no resume to check
    r = run_r1dist("--cfg " + cfg + " --resume auto", Launch{2});
    ASSERT_EQ(r.code, 0) << c.fault << "\n" << r.err;
    expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, c.fault);
  }
}

// Inputs whose messages once named the wrong thing, or nothing.
TEST(Faults, BadInputsAreNamed) {
  TempDir d;
  const auto cfg = run_config(d / "run", 1, 2);
  struct Case {
    std::string args;
    int code;
    std::string says;
  };
  const Case cases[] = {
      {"--set train.grad_accum=4611686018427387904", 2, "beyond 2^40"},
      {"--set train.micro_batch=4 --set train.grad_accum=4611686018427387905", 2, "beyond 2^40"},
      {"--set data.path=" + d.path, 2, "cannot read the data file (it is a directory, not a file)"},
      {"--resume auto --resume-anyway train.lrr", 2, "--resume-anyway: unknown key 'train.lrr' (did you mean 'train.lr'?)"},
  };
  for (const auto& c : cases) {
    const auto r = run_r1dist("--cfg " + cfg + " " + c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.says)) << c.args;
    EXPECT_THAT(r.err, Not(HasSubstr("basic_string"))) << c.args;
  }
  // config.json values that used to pass the dry run, or be blamed on the batch.
  const auto model = d / "model";
  copy_tree(tiny_model_dir(), model);
  const std::pair<std::function<void(nlohmann::json&)>, std::string> edits[] = {
      {[](nlohmann::json& j) { j["eos_token_id"] = -7; }, "eos_token_id -7 is not a token id"},
      {[](nlohmann::json& j) { j["torch_dtype"] = 5; j.erase("dtype"); }, "\"torch_dtype\" is a JSON number (5), not a string"},
      {[](nlohmann::json& j) { j["use_sliding_window"] = 20; }, "\"use_sliding_window\" is a JSON number (20), not a boolean"},
      {[](nlohmann::json& j) { j["vocab_size"] = 20000000000LL; }, "Driven by the model itself"},
  };
  const auto original = read_text(model + "/config.json");
  for (const auto& [edit, says] : edits) {
    write_text(model + "/config.json", original);
    edit_json(model + "/config.json", edit);
    const auto r = run_r1dist("--cfg " + cfg + " --dry-run --set model.path=" + model);
    EXPECT_EQ(r.code, 2) << says << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(says));
    EXPECT_THAT(r.err, Not(HasSubstr("json.exception")));
  }
  write_text(model + "/config.json", original);
  edit_json(model + "/config.json", [](nlohmann::json& j) { j["eos_token_id"] = {151643, 151645}; });
  const auto r = run_r1dist("--cfg " + cfg + " --dry-run --set model.path=" + model);
  EXPECT_EQ(r.code, 0) << "a list of eos ids, as transformers allows: " << r.err;
}

}  // namespace
}  // namespace r1dist::test
