// The trainer's pieces (AdamW, schedules, clipping, layer checkpointing, KL drift) and
// whole runs under `mpirun -np 2`: data-parallel equivalence, exact resume, crash safety.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "r1dist/checkpoint.h"
#include "r1dist/eval.h"
#include "r1dist/fs_util.h"
#include "r1dist/optim.h"
#include "r1dist/qwen2.h"
#include "test_util.h"

using namespace r1dist;
using namespace r1dist::test;

TEST(Optim, AdamWMatchesTheFormulaInDoublePrecision) {
  auto p = at::randn({37}, at::kFloat);
  const auto p0 = p.to(at::kDouble).clone();
  AdamWConfig c{0.9, 0.95, 1e-6, 0.1};
  AdamW opt(p, c);
  std::vector<double> w(p0.data_ptr<double>(), p0.data_ptr<double>() + 37), m(37, 0), v(37, 0);
  const double lrs[] = {1e-2, 5e-3, 2e-3, 1e-3};
  for (int t = 1; t <= 4; ++t) {
    auto g = at::randn({37}, at::kFloat);
    const double lr = lrs[t - 1];
    opt.step(p, g, lr);
    for (int i = 0; i < 37; ++i) {
      const double gi = g[i].item<float>();
      w[i] *= 1 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
      const double mh = m[i] / (1 - std::pow(c.beta1, t)), vh = v[i] / (1 - std::pow(c.beta2, t));
      w[i] -= lr * mh / (std::sqrt(vh) + c.eps);
    }
  }
  EXPECT_EQ(opt.steps(), 4);
  auto want = at::tensor(w, at::kDouble);
  max_rel_err(p, want, 1e-6, "AdamW after 4 steps");
}

TEST(Optim, ScheduleFollowsTransformersWarmupAndDecay) {
  // transformers.get_linear_schedule_with_warmup(5, 60): step/5 during warmup, then
  // (60 - step) / 55; the first optimizer step (step 0) uses lr 0.
  EXPECT_EQ(lr_at("linear", 2e-4, 0, 5, 60), 0.0);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2e-4, 4, 5, 60), 2e-4 * 4 / 5);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2e-4, 5, 5, 60), 2e-4);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2e-4, 32, 5, 60), 2e-4 * 28 / 55);
  EXPECT_DOUBLE_EQ(lr_at("linear", 2e-4, 59, 5, 60), 2e-4 / 55);
  // get_cosine_schedule_with_warmup: 0.5 (1 + cos(pi progress)), progress over 55 steps.
  EXPECT_NEAR(lr_at("cosine", 1.0, 5 + 55 / 2.0, 5, 60), 0.5, 0.03);
  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 5, 5, 60), 1.0);
  EXPECT_NEAR(lr_at("cosine", 1.0, 60, 5, 60), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at("constant", 3e-6, 40, 5, 60), 3e-6);
  EXPECT_THROW(lr_at("step", 1.0, 0, 0, 10), UsageError);
}

TEST(Optim, ClipGradNormScalesOnlyAboveTheLimit) {
  auto g = at::full({100}, 0.3f);  // norm 3
  EXPECT_NEAR(clip_grad_norm(g, 1.0), 3.0, 1e-6);
  EXPECT_NEAR(g.norm().item<double>(), 1.0, 1e-5);
  auto h = at::full({4}, 0.1f);
  EXPECT_NEAR(clip_grad_norm(h, 1.0), 0.2, 1e-6);
  EXPECT_TRUE(h.equal(at::full({4}, 0.1f)));
  auto n = at::full({4}, NAN);
  EXPECT_TRUE(std::isnan(clip_grad_norm(n, 1.0)));
}

namespace {

Qwen2Model small_model(double dropout, const std::string& quant) {
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 300;
  Qwen2Model m(cfg, at::kFloat, at::Device(at::kCPU));
  at::manual_seed(7);
  for (auto& [name, t] : m.named_weights()) t->normal_(0, 0.05);
  if (quant == "nf4")
    for (auto& a : m.adapters()) a.layer->quantize(true, a.module_path);
  m.attach_lora(LoraSpec{8, 16, dropout, false}, projection_names(), 3407);
  at::NoGradGuard ng;
  m.lora_flat().normal_(0, 0.02);  // non-zero B: every gradient is non-trivial
  return m;
}

at::Tensor grads(Qwen2Model& m, const at::Tensor& ids, bool checkpoint) {
  m.lora_flat_grad().zero_();
  at::manual_seed(11);  // the same dropout masks for both variants
  auto loss = causal_lm_loss(m.lm_head(m.hidden_states_train(ids, checkpoint)), ids);
  loss.backward();
  return m.lora_flat_grad().clone();
}

}  // namespace

TEST(LayerCheckpointing, RecomputedLayersGiveTheSameGradients) {
  for (const char* quant : {"none", "nf4"}) {
    auto m = small_model(0.0, quant);
    auto ids = at::randint(0, 300, {2, 13});
    const auto plain = grads(m, ids, false), ckpt = grads(m, ids, true);
    EXPECT_GT(plain.abs().sum().item<double>(), 0);
    max_rel_err(ckpt, plain, 1e-6, std::string("checkpointed vs plain gradients, base ") + quant);
  }
}

TEST(LayerCheckpointing, DropoutMasksAreReplayedInTheRecomputation) {
  auto m = small_model(0.3, "none");
  auto ids = at::randint(0, 300, {2, 11});
  const auto plain = grads(m, ids, false), ckpt = grads(m, ids, true);
  max_rel_err(ckpt, plain, 1e-6, "gradients with LoRA dropout 0.3");
}

TEST(Drift, KlIsZeroForTheBaseAndPositiveOnceAdaptersChange) {
  auto m = small_model(0.0, "none");
  Example e;
  for (int i = 0; i < 40; ++i) e.ids.push_back((i * 37) % 300);
  e.labels.assign(e.ids.begin(), e.ids.end());
  {
    // B = 0: the adapted model is the base model.
    at::NoGradGuard ng;
    for (auto& [name, t] : m.lora_named_parameters())
      if (name.find("lora_B") != std::string::npos) t.zero_();
  }
  auto kl0 = kl_drift(m, {&e}, 16);
  EXPECT_EQ(kl0.count, 39);
  EXPECT_NEAR(kl0.mean(), 0.0, 1e-7);
  {
    at::NoGradGuard ng;
    m.lora_flat().normal_(0, 0.05);
  }
  auto kl1 = kl_drift(m, {&e}, 16);
  auto kl1_one_chunk = kl_drift(m, {&e}, 1000);
  EXPECT_GT(kl1.mean(), 1e-6);
  // Chunking changes only the GEMM blocking: fp32 log-probs differ in the last bits, and KL
  // is a difference of log-probs, so allow 1e-7 per position on top of 0.1%.
  EXPECT_NEAR(kl1.sum, kl1_one_chunk.sum, 1e-3 * std::abs(kl1.sum) + 1e-7 * double(kl1.count));
  // The adapters are on again afterwards.
  for (auto& a : m.adapters()) EXPECT_TRUE(a.layer->adapter_enabled);
}

// ---- whole runs ---------------------------------------------------------------------

namespace {

// Shared by the run tests: the tiny preset (real R1 vocabulary) with the R1 tokenizer.
const std::string& tiny_model_dir() {
  static TempDir dir;
  static std::string path;
  if (path.empty()) {
    path = dir / "tiny";
    auto r = run_r1dist("init-model --preset tiny --dtype fp32 --seed 1 --out " + path + " --tokenizer " +
                        std::string(R1DIST_TOKENIZER_DIR));
    if (r.code != 0) throw std::runtime_error("init-model failed: " + r.err);
  }
  return path;
}

std::string sample_data() { return std::string(R1DIST_SOURCE_DIR) + "/data/sample_zh.jsonl"; }

// A small, quick training config: fp32 (so results compare tightly), NF4 base, short rows.
std::string run_config(const std::string& out_dir, int micro, int accum, int steps = 10) {
  std::ostringstream os;
  os << "[model]\npath = \"" << tiny_model_dir() << "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n"
     << "[lora]\nr = 8\nalpha = 16\n"
     << "[data]\npath = \"" << sample_data() << "\"\nmax_seq_len = 96\neval_rows = 4\nthreads = 1\n"
     << "[train]\nlr = 2e-3\nsteps = " << steps << "\nmicro_batch = " << micro << "\ngrad_accum = " << accum
     << "\nwarmup_steps = 2\n"
     << "[eval]\nevery_steps = 5\nkl_rows = 2\n"
     << "[dist]\ntimeout_s = 60\n"
     << "[output]\ndir = \"" << out_dir << "\"\nsave_every = 5\nkeep = 10\n";
  const std::string path = out_dir + ".toml";
  write_text(path, os.str());
  return path;
}

// Runs `np` ranks (np = 0: no mpirun) with an environment prefix; returns the exit code.
RunResult mpirun(int np, const std::string& args, const std::string& env = "") {
  TempDir tmp;
  std::string cmd = env + " ";
  if (np > 0) cmd += "mpirun -np " + std::to_string(np) + " ";
  cmd += std::string(R1DIST_BINARY) + " " + args + " >" + (tmp / "out") + " 2>" + (tmp / "err");
  if (std::getenv("R1DIST_TEST_VERBOSE")) std::fprintf(stderr, "+ %s\n", cmd.c_str());
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(tmp / "out");
  r.err = read_text(tmp / "err");
  return r;
}

at::Tensor adapters_of(const CheckpointState& s) {
  std::vector<at::Tensor> parts;
  for (const auto& a : s.adapters)
    parts.push_back(at::from_blob(const_cast<float*>(a.data.data()), {int64_t(a.data.size())}, at::kFloat));
  return at::cat(parts);
}

at::Tensor vec(const std::vector<float>& v) {
  return at::from_blob(const_cast<float*>(v.data()), {int64_t(v.size())}, at::kFloat).clone();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_bitwise_equal(const CheckpointState& a, const CheckpointState& b, const std::string& what) {
  ASSERT_EQ(a.adapters.size(), b.adapters.size()) << what;
  for (size_t i = 0; i < a.adapters.size(); ++i)
    EXPECT_TRUE(same_bits(a.adapters[i].data, b.adapters[i].data)) << what << ": " << a.adapters[i].name;
  EXPECT_TRUE(same_bits(a.adam_m, b.adam_m)) << what << ": exp_avg";
  EXPECT_TRUE(same_bits(a.adam_v, b.adam_v)) << what << ": exp_avg_sq";
  EXPECT_EQ(a.adam_step, b.adam_step) << what;
  EXPECT_EQ(a.step, b.step) << what;
}

// The uninterrupted reference: 2 ranks x micro 1 x accum 2, 10 steps.
struct Reference {
  TempDir dir;
  std::string out, cfg;
  CheckpointState final_state;
  MetricsData metrics;
};

const Reference& reference_run() {
  static Reference* ref = nullptr;
  if (!ref) {
    ref = new Reference;
    ref->out = ref->dir / "ref";
    ref->cfg = run_config(ref->out, 1, 2);
    auto r = mpirun(2, "--cfg " + ref->cfg);
    if (r.code != 0) throw std::runtime_error("reference run failed:\n" + r.err);
    ref->final_state = read_checkpoint(checkpoint_path(ref->out, 10));
    ref->metrics = read_metrics(ref->out + "/metrics.h5");
  }
  return *ref;
}

}  // namespace

TEST(TrainerMpi, TwoRanksEqualOneRankWithDoubleAccumulation) {
  // At the recipe's learning rate (2e-4). The micro-batch gradients are bitwise equal in
  // both layouts; only the order of the fp32 sums differs ((g0+g1)+(g2+g3) against
  // ((g0+g1)+g2)+g3), and AdamW carries that rounding into the adapters.
  TempDir d;
  const auto two_out = d / "two", one_out = d / "one";
  auto r = mpirun(2, "--cfg " + run_config(two_out, 1, 2) + " --set train.lr=2e-4");
  ASSERT_EQ(r.code, 0) << r.err;
  r = mpirun(0, "--cfg " + run_config(one_out, 1, 4) + " --set train.lr=2e-4");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto two = read_checkpoint(checkpoint_path(two_out, 10));
  const auto one = read_checkpoint(checkpoint_path(one_out, 10));
  EXPECT_EQ(one.world_size, 1);
  EXPECT_EQ(two.world_size, 2);
  const double err = max_rel_err(adapters_of(one), adapters_of(two), 1e-6,
                                 "adapters: 1 rank x accum 4 vs 2 ranks x accum 2");
  std::printf("adapter max rel err, 1 rank vs 2 ranks after 10 steps at lr 2e-4: %.3g\n", err);
  // The adapters moved: the comparison is not between two initial states.
  const auto five = read_checkpoint(checkpoint_path(two_out, 5));
  EXPECT_GT((adapters_of(five) - adapters_of(two)).abs().max().item<double>(), 1e-4);
  auto m1 = read_metrics(one_out + "/metrics.h5"), m2 = read_metrics(two_out + "/metrics.h5");
  ASSERT_EQ(m1.steps.size(), 10u);
  ASSERT_EQ(m2.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_NEAR(m1.steps[i].loss, m2.steps[i].loss, 1e-5) << "step " << i + 1;
}

TEST(TrainerMpi, LossGoesDownOnTheBundledSample) {
  const auto& ref = reference_run();
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
    EXPECT_DOUBLE_EQ(ref.metrics.steps[i].lr, lr_at("linear", 2e-3, int64_t(i), 2, 10));
    EXPECT_GT(ref.metrics.steps[i].tokens, 0);
  }
}

TEST(TrainerMpi, StopAndResumeIsBitwiseIdentical) {
  const auto& ref = reference_run();
  TempDir d;
  const auto out = d / "resumed";
  const auto cfg = run_config(out, 1, 2);
  auto r = mpirun(2, "--cfg " + cfg + " --stop-after 5");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = mpirun(2, "--cfg " + cfg + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "2 ranks, stop at 5, resume");
  auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
}

TEST(TrainerMpi, ResumeOnADifferentWorldSize) {
  const auto& ref = reference_run();
  TempDir d;
  const auto out = d / "w2to1";
  auto r = mpirun(2, "--cfg " + run_config(out, 1, 2) + " --stop-after 5");
  ASSERT_EQ(r.code, 0) << r.err;
  // Same global batch (4 rows) on one rank: grad_accum 4.
  r = mpirun(0, "--cfg " + run_config(out, 1, 4) + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto s = read_checkpoint(checkpoint_path(out, 10));
  EXPECT_EQ(s.world_size, 1);
  max_rel_err(adapters_of(s), adapters_of(ref.final_state), 1e-6, "adapters after 2 -> 1 rank resume");
  max_rel_err(vec(s.adam_v), vec(ref.final_state.adam_v), 1e-5, "exp_avg_sq after 2 -> 1 rank resume");
  // A different global batch is refused with the arithmetic that fixes it.
  r = mpirun(0, "--cfg " + run_config(out, 1, 2) + " --resume auto --set train.steps=12");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("global batch was 4 rows"), std::string::npos) << r.err;
}

TEST(TrainerMpi, KilledRankEndsTheJobAndResumeFinishesIt) {
  const auto& ref = reference_run();
  TempDir d;
  const auto out = d / "killed";
  const auto cfg = run_config(out, 1, 2);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = mpirun(2, "--cfg " + cfg, "R1DIST_FAULT=kill:rank=1:step=7");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.code, 0);
  EXPECT_LT(secs, 120) << "the job did not end promptly after a rank died";
  // Every step completed before the kill is in the metrics file (steps 1..6 at least).
  auto m = read_metrics(out + "/metrics.h5");
  ASSERT_GE(m.steps.size(), 6u);
  for (size_t i = 0; i < m.steps.size(); ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = mpirun(2, "--cfg " + cfg + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "kill at 7, resume");
  m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(m.steps[i].step, int64_t(i + 1));
}

TEST(TrainerMpi, KillDuringACheckpointWriteKeepsTheLastGoodOne) {
  const auto& ref = reference_run();
  TempDir d;
  const auto out = d / "killed_ckpt";
  const auto cfg = run_config(out, 1, 2);
  auto r = mpirun(2, "--cfg " + cfg, "R1DIST_FAULT=kill_in_checkpoint:step=10");
  EXPECT_NE(r.code, 0);
  // The step-10 file never appeared; step 5 is intact and is what auto-resume picks.
  EXPECT_FALSE(checkpoint_is_valid(checkpoint_path(out, 10)));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  r = mpirun(2, "--cfg " + cfg + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_bitwise_equal(read_checkpoint(checkpoint_path(out, 10)), ref.final_state, "kill in checkpoint, resume");
}

TEST(TrainerMpi, NonFiniteLossStopsWithTheStepAndKeepsTheLastCheckpoint) {
  TempDir d;
  const auto out = d / "nan";
  // Rank 1's loss of step 7 becomes NaN; the gradient sum carries it to every rank.
  auto r = mpirun(2, "--cfg " + run_config(out, 1, 2), "R1DIST_FAULT=nan_loss:rank=1:step=7");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("non-finite loss at step 7"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step_00000005.h5"), std::string::npos) << "names the last good checkpoint:\n" << r.err;
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 5));
  EXPECT_FALSE(std::filesystem::exists(checkpoint_path(out, 7)));
}
