// Every file in configs/ loads and validates, and v1-v8 reproduce the seed experiment's
// table as docs/SWEEPS.md states it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "r1dist/config/config.h"
#include "r1dist/sweep/sweep.h"
#include "support/temp.h"

using namespace r1dist;
using namespace r1dist::test;

namespace {

struct Version {
  bool operator==(const Version& o) const { return size == o.size && kind == o.kind && lr == o.lr && steps == o.steps; }
  std::string size, kind;
  double lr = 0;
  int64_t steps = 0;
};

// The versions table of docs/SWEEPS.md: "| v1 | 1.5B | fine-tuned | 2e-4 | 60 |".
std::map<std::string, Version> parse_table(const std::string& text) {
  std::map<std::string, Version> out;
  std::regex row(R"(\|\s*(v[1-8])\s*\|\s*([0-9.]+B)\s*\|\s*(fine-tuned|base)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|)");
  for (std::sregex_iterator it(text.begin(), text.end(), row), end; it != end; ++it) {
    Version v;
    v.size = (*it)[2];
    v.kind = (*it)[3];
    if (v.kind == "fine-tuned") {
      v.lr = std::stod((*it)[4]);
      v.steps = std::stoll((*it)[5]);
    }
    out[(*it)[1]] = v;
  }
  return out;
}

std::string configs_dir() { return std::string(R1DIST_SOURCE_DIR) + "/configs"; }

std::map<std::string, Version> versions() {
  return parse_table(read_text(std::string(R1DIST_SOURCE_DIR) + "/docs/SWEEPS.md"));
}

}  // namespace

TEST(Configs, EveryFileInConfigsLoadsAndValidates) {
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(configs_dir())) {
    if (e.path().extension() != ".toml") continue;
    if (e.path().string().find(".sweep.toml") != std::string::npos) {  // sweep files: test_sweep.cpp, below
      EXPECT_NO_THROW(read_sweep(e.path().string())) << e.path();
      continue;
    }
    ++n;
    EXPECT_NO_THROW({
      const auto c = load_config(e.path().string());
      // Round trip: the printed config parses back to the same values.
      EXPECT_EQ(parse_config_string(c.to_toml(), "roundtrip"), c) << e.path();
    }) << e.path();
  }
  EXPECT_GE(n, 16) << "v1..v8 and demo/v1..v8";
}

TEST(Configs, VersionsReproduceTheSeedExperimentTable) {
  const auto table = versions();
  ASSERT_EQ(table.size(), 8u) << "docs/SWEEPS.md's table of the eight versions";
  const int ranks = 8;  // the configs' documented launch: mpirun -np 8
  for (const auto& [name, v] : table) {
    SCOPED_TRACE(name);
    const auto c = load_config(configs_dir() + "/" + name + ".toml");
    EXPECT_NE(c.model.path.find("DeepSeek-R1-Distill-Qwen-" + v.size), std::string::npos) << c.model.path;
    EXPECT_EQ(c.lora.r, 16);
    EXPECT_EQ(c.lora.alpha, 16);
    EXPECT_EQ(c.quant.mode, QuantMode::nf4);
    EXPECT_EQ(c.data.max_seq_len, 8192);
    EXPECT_EQ(c.data.n_samples - c.data.eval_rows, 500) << "about 500 training rows";
    EXPECT_GT(c.data.eval_rows, 0);
    EXPECT_EQ(c.output.dir, "runs/" + name);
    EXPECT_TRUE(c.data.train_on_prompt) << "the seed recipe: loss on the whole text (the default is the response only)";
    if (v.kind == "base") {
      EXPECT_EQ(c.train.steps, 0) << "base versions are evaluation-only";
      continue;
    }
    EXPECT_DOUBLE_EQ(c.train.lr, v.lr);
    EXPECT_EQ(c.train.steps, v.steps);
    const int64_t global = c.train.micro_batch * c.train.grad_accum * ranks;
    if (v.lr == 2e-4)
      EXPECT_EQ(global, 64);
    else
      EXPECT_LT(global, 64) << "the low-lr runs use a smaller global batch";
    if (name == "v8") EXPECT_EQ(c.eval.every_steps, 5);
    // The file names the command that runs it.
    EXPECT_NE(read_text(configs_dir() + "/" + name + ".toml").find("mpirun -np 8 r1dist train --cfg configs/" + name + ".toml"),
              std::string::npos);
  }
}

// configs/demo/: the same eight versions at demo size, run by the same Slurm scripts.
TEST(Configs, DemoVersionsMirrorTheExperiment) {
  for (const auto& [name, v] : versions()) {
    SCOPED_TRACE(name);
    const auto c = load_config(configs_dir() + "/demo/" + name + ".toml");
    EXPECT_NE(c.model.path.find("DeepSeek-R1-Distill-Qwen-" + v.size), std::string::npos) << c.model.path;
    EXPECT_EQ(c.lora.r, 16);
    EXPECT_EQ(c.lora.alpha, 16);
    EXPECT_EQ(c.output.dir, "runs/demo/" + name);
    EXPECT_TRUE(c.data.train_on_prompt) << "as the seed recipe";
    EXPECT_NE(c.model.name.find(name), std::string::npos) << "the report names each version";
    if (v.kind == "base")
      EXPECT_EQ(c.train.steps, 0);
    else
      EXPECT_GT(c.train.steps, 0);
  }
}

// The seed experiment as a sweep file (configs/seed.sweep.toml, and configs/demo/seed.sweep.toml
// at demo size): the five fine-tunes from their own configs, the three base evaluations
// derived, one per model; every Slurm script parses.
TEST(Configs, SeedSweepFilesRunTheEightVersions) {
  const auto table = versions();
  for (const std::string file : {"/seed.sweep.toml", "/demo/seed.sweep.toml"}) {
    SCOPED_TRACE(file);
    const auto sw = read_sweep(configs_dir() + file);
    ASSERT_EQ(sw.points.size(), 8u);
    std::map<std::string, int> bases_per_size;
    for (const auto& pt : sw.points) {
      if (pt.derived) {
        EXPECT_TRUE(pt.base);
        EXPECT_EQ(pt.cfg.train.steps, 0);
        for (const auto& [name, v] : table)
          if (v.kind == "base" && pt.cfg.model.path.find("Qwen-" + v.size) != std::string::npos) ++bases_per_size[v.size];
        continue;
      }
      ASSERT_TRUE(table.count(pt.name)) << pt.name;
      const auto alone = load_config(configs_dir() + (file[1] == 'd' ? "/demo/" : "/") + pt.name + ".toml");
      EXPECT_EQ(pt.cfg.train.lr, alone.train.lr) << pt.name;
      EXPECT_EQ(pt.cfg.train.steps, alone.train.steps) << pt.name;
      EXPECT_EQ(pt.cfg.model.path, alone.model.path) << pt.name;
      EXPECT_EQ(pt.cfg.output.dir, sw.out + "/" + pt.name);
    }
    EXPECT_EQ(bases_per_size, (std::map<std::string, int>{{"1.5B", 1}, {"7B", 1}, {"14B", 1}}));
  }
  const std::string dir = std::string(R1DIST_SOURCE_DIR) + "/cluster/slurm/";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (ext != ".sh" && ext != ".sbatch") continue;
    ++n;
    EXPECT_EQ(std::system(("bash -n " + e.path().string()).c_str()), 0) << e.path();
    EXPECT_EQ(read_text(e.path().string()).find("v1 v5"), std::string::npos) << "no version table in " << e.path();
  }
  EXPECT_GE(n, 7) << "site, lib, run_point, submit, report and two sbatch files";
}
