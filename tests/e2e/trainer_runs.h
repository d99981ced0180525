// What the end-to-end trainer tests share: the tiny model, the training config they run, the
// uninterrupted 2-rank reference run (shared fixtures, built once per test run), and
// comparisons of checkpoints. Torch-free: checkpoints are read as plain float arrays.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/formats/tensorboard.h"
#include "support/process.h"
#include "support/shared_fixture.h"
#include "support/temp.h"

namespace r1dist::test {

// The tiny preset (real R1 vocabulary, fp32) with the R1 tokenizer.
inline std::string tiny_model_dir(bool rebuild = false) {
  return shared_fixture(
             "tiny_model",
             [](const std::string& dir) {
               const auto r = run_r1dist("init-model --preset tiny --dtype fp32 --seed 1 --out " + dir + "/tiny" +
                                         " --tokenizer " + std::string(R1DIST_TOKENIZER_DIR));
               if (r.code != 0) throw std::runtime_error("init-model failed: " + r.err);
             },
             rebuild) +
         "/tiny";
}

inline std::string sample_data() { return source_dir() + "/data/sample_zh.jsonl"; }

// A small, quick training config: fp32 (so results compare tightly), NF4 base, short rows.
inline std::string run_config(const std::string& out_dir, int micro, int accum, int steps = 10) {
  std::ostringstream os;
  os << "[model]\npath = \"" << tiny_model_dir() << "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n"
     << "[lora]\nr = 8\nalpha = 16\n"
     << "[data]\npath = \"" << sample_data() << "\"\nmax_seq_len = 96\neval_rows = 4\nthreads = 1\n"
     // 96 tokens hold little more than the prompt: the loss is on the whole text (the seed recipe)
     << "train_on_prompt = true\n"
     << "[train]\nlr = 2e-3\nsteps = " << steps << "\nmicro_batch = " << micro << "\ngrad_accum = " << accum
     << "\nwarmup_steps = 2\n"
     << "[eval]\nevery_steps = 5\nkl_rows = 2\n"
     << "[dist]\ntimeout_s = 60\n"
     << "[output]\ndir = \"" << out_dir << "\"\nsave_every = 5\nkeep = 10\n";
  const std::string path = out_dir + ".toml";
  write_text(path, os.str());
  return path;
}

// The uninterrupted reference: 2 ranks x micro 1 x accum 2, 10 steps.
struct Reference {
  std::string out;  // its output.dir
  CheckpointState final_state;
  MetricsData metrics;
};

inline Reference reference_run(bool rebuild = false) {
  const auto dir = shared_fixture(
      "reference_run",
      [](const std::string& d) {
        const auto r = run_r1dist("--cfg " + run_config(d + "/ref", 1, 2), Launch{2});
        if (r.code != 0) throw std::runtime_error("reference run failed:\n" + r.err);
      },
      rebuild);
  Reference ref;
  ref.out = dir + "/ref";
  ref.final_state = read_checkpoint(checkpoint_path(ref.out, 10));
  ref.metrics = read_metrics(ref.out + "/metrics.h5");
  return ref;
}

// A private copy of the reference run's output.dir under `d` (for a test that writes into a
// run directory: a lock, the data cache, an /eval group); its config stays ref.out + ".toml"
// with --set output.dir=COPY.
inline std::string reference_copy(const TempDir& d) {
  const std::string copy = d / "ref";
  copy_tree(reference_run().out, copy);
  return copy;
}

// Every adapter value of a checkpoint, concatenated in order.
inline std::vector<float> adapters_of(const CheckpointState& s) {
  std::vector<float> out;
  for (const auto& a : s.adapters) out.insert(out.end(), a.data.begin(), a.data.end());
  return out;
}

// max|a-b| / max|b|; a failure names the worst element.
inline double max_rel_err(const std::vector<float>& a, const std::vector<float>& b, double tol,
                          const std::string& what) {
  EXPECT_EQ(a.size(), b.size()) << what;
  double worst = 0, scale = 1e-30;
  size_t at = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    if (d > worst) worst = d, at = i;
    scale = std::max(scale, std::abs(double(b[i])));
  }
  const double err = worst / scale;
  EXPECT_LT(err, tol) << what << ": max rel err " << err << "; worst at [" << at << "]: "
                      << (at < a.size() ? a[at] : 0.f) << " vs " << (at < b.size() ? b[at] : 0.f);
  return err;
}

// The exported adapter's tensors, in the checkpoint's order.
inline std::vector<float> adapter_values(const std::string& dir, const CheckpointState& like) {
  auto f = st::File::open(dir + "/adapter_model.safetensors");
  std::vector<float> out;
  for (const auto& a : like.adapters) {
    const auto& t = f.at(a.name);
    const auto* p = reinterpret_cast<const float*>(f.data(t));
    out.insert(out.end(), p, p + a.data.size());
  }
  return out;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline void expect_bitwise_equal(const CheckpointState& a, const CheckpointState& b, const std::string& what) {
  ASSERT_EQ(a.adapters.size(), b.adapters.size()) << what;
  for (size_t i = 0; i < a.adapters.size(); ++i)
    EXPECT_TRUE(same_bits(a.adapters[i].data, b.adapters[i].data)) << what << ": " << a.adapters[i].name;
  EXPECT_TRUE(same_bits(a.adam_m, b.adam_m)) << what << ": exp_avg";
  EXPECT_TRUE(same_bits(a.adam_v, b.adam_v)) << what << ": exp_avg_sq";
  EXPECT_EQ(a.adam_step, b.adam_step) << what;
  EXPECT_EQ(a.step, b.step) << what;
}

// output.dir/tensorboard read by an independent decoder (node tools/js/check_tensorboard.mjs:
// its own framing and CRC-32C, protobufjs with TensorFlow's schema): every scalar series
// equals its column in what `r1dist metrics` prints (with the final evaluation's numbers
// where the run has one), each step once, in order. Skipped (with a note) where node or the
// npm packages are missing.
inline void expect_tensorboard_equals_metrics(const std::string& out) {
  if (!node_available() || !std::filesystem::exists(source_dir() + "/tools/js/node_modules/protobufjs")) {
    std::fprintf(stderr, "note: node or tools/js/node_modules/protobufjs is missing: the TensorBoard check "
                         "is skipped (bash tools/install-deps.sh installs them)\n");
    return;
  }
  const auto m = run_r1dist("metrics " + out + "/metrics.h5");
  ASSERT_EQ(m.code, 0) << m.err;
  const auto final_eval = run_r1dist("metrics " + out + "/metrics.h5 --table eval");  // 1: none
  write_text(out + "/metrics.tsv", m.out + (final_eval.code == 0 ? "# eval\n" + final_eval.out : ""));
  const auto r = run_command("node " + source_dir() + "/tools/js/check_tensorboard.mjs " + out + "/tensorboard " +
                             out + "/metrics.tsv");
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

// The steps of the events in output.dir/tensorboard, read with r1dist's own reader, in order.
inline std::vector<int64_t> tensorboard_steps(const std::string& out) {
  std::vector<int64_t> steps;
  for (const auto& e : std::filesystem::directory_iterator(out + "/tensorboard")) {
    std::string error;
    for (const auto& r : tensorboard::read_records(read_text(e.path().string()), e.path().string(), &error))
      if (r.event.file_version.empty()) steps.push_back(r.event.step);
    EXPECT_EQ(error, "");
  }
  return steps;
}

}  // namespace r1dist::test
