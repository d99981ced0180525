// Sweep files (sweep/sweep.h): a grid expands to the product of its axes with names made from
// the values, explicit points and [set] apply, base evaluations are derived one per model;
// every bad file is refused naming the file, line, point and key; the plan is written and
// `sweep status` reads what the job script records.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "r1dist/sweep/sweep.h"
#include "support/temp.h"

using namespace r1dist;
using namespace r1dist::test;

namespace {

// A base config and a sweep file beside it.
struct SweepDir {
  TempDir tmp;
  SweepDir() {
    write_text(tmp / "base.toml",
               "[model]\npath = \"models/DeepSeek-R1-Distill-Qwen-1.5B\"\n[data]\npath = \"d.jsonl\"\n"
               "[train]\nlr = 1e-4\nsteps = 10\nwarmup_steps = 2\n");
  }
  std::string sweep(const std::string& text) {
    const auto p = tmp / "s.sweep.toml";
    write_text(p, text);
    return p;
  }
};

const SweepPoint& point(const Sweep& sw, const std::string& name) {
  for (const auto& p : sw.points)
    if (p.name == name) return p;
  throw std::runtime_error("no point " + name);
}

}  // namespace

TEST(Sweep, GridIsTheProductOfItsAxesNamedByTheirValues) {
  SweepDir d;
  const auto sw = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\nout = \"" + d.tmp.path + "/out\"\n"
                                     "[grid]\nmodel.path = [\"m/DeepSeek-R1-Distill-Qwen-1.5B\", \"m/DeepSeek-R1-Distill-Qwen-14B\"]\n"
                                     "train.lr = [2e-4, 5e-6]\ntrain.steps = [30, 60]\n"));
  ASSERT_EQ(sw.points.size(), 8u + 2u);
  EXPECT_EQ(sw.axes, (std::vector<std::string>{"model.path", "train.lr", "train.steps"}));
  // The file's order, not the alphabet's.
  const auto rev = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\n[grid]\ntrain.steps = [1, 2]\nlora.r = [4, 8]\n"));
  EXPECT_EQ(rev.axes, (std::vector<std::string>{"train.steps", "lora.r"}));
  EXPECT_EQ(rev.points[0].name, "s1-r4");
  EXPECT_EQ(rev.points[1].name, "s1-r8");
  // First axis outermost, in file order.
  const std::vector<std::string> names = {"1.5b-lr2e-04-s30", "1.5b-lr2e-04-s60", "1.5b-lr5e-06-s30",
                                          "1.5b-lr5e-06-s60", "14b-lr2e-04-s30",  "14b-lr2e-04-s60",
                                          "14b-lr5e-06-s30",  "14b-lr5e-06-s60"};
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& p = sw.points[i];
    EXPECT_EQ(p.name, names[i]);
    EXPECT_FALSE(p.base);
    EXPECT_EQ(p.cfg.output.dir, d.tmp.path + "/out/" + p.name);
    EXPECT_EQ(p.cfg.model.name, p.name) << "the report and the logs name the point";
    EXPECT_EQ(p.cfg.data.path, "d.jsonl") << "the rest comes from the base config";
  }
  const auto& p = point(sw, "14b-lr5e-06-s30");
  EXPECT_EQ(p.cfg.model.path, "m/DeepSeek-R1-Distill-Qwen-14B");
  EXPECT_DOUBLE_EQ(p.cfg.train.lr, 5e-6);
  EXPECT_EQ(p.cfg.train.steps, 30);
  // One base evaluation per model, on the same settings as its first point, without training.
  const auto& b = point(sw, "base-14b");
  EXPECT_TRUE(b.base && b.derived);
  EXPECT_EQ(b.cfg.train.steps, 0);
  EXPECT_EQ(b.cfg.model.path, "m/DeepSeek-R1-Distill-Qwen-14B");
  EXPECT_EQ(point(sw, "base-1.5b").cfg.model.path, "m/DeepSeek-R1-Distill-Qwen-1.5B");
}

TEST(Sweep, PointsSetsTemplatesAndOverrides) {
  SweepDir d;
  write_text(d.tmp / "other.toml", "[model]\npath = \"models/X-7B\"\n[train]\nlr = 3e-4\nsteps = 5\n");
  SweepOptions opt;
  opt.sets = {"train.seed=7"};
  opt.models = "/cluster/models";
  opt.data = "/cluster/data.json";
  const auto sw = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\nname = \"r{lora.r}-{train.lr}\"\n"
                                     "[set]\neval.every_steps = 5\n[grid]\nlora.r = [8, 16]\ntrain.lr = [1e-5]\n"
                                     "[[point]]\nname = \"mine\"\nconfig = \"other.toml\"\ntrain.steps = 0\n"),
                             opt);
  ASSERT_EQ(sw.points.size(), 4u) << "the explicit point evaluates its model: no base derived for it, and the grid's "
                                     "model gets one";
  EXPECT_TRUE(point(sw, "base-1.5b").derived);
  EXPECT_EQ(point(sw, "base-1.5b").cfg.model.path, "/cluster/models/DeepSeek-R1-Distill-Qwen-1.5B");
  EXPECT_EQ(sw.out, "runs/s") << "the default output root is runs/<file stem>";
  const auto& g = point(sw, "r8-1e-05");
  EXPECT_EQ(g.cfg.lora.r, 8);
  EXPECT_EQ(g.cfg.eval.every_steps, 5);
  EXPECT_EQ(g.cfg.train.seed, 7);
  EXPECT_EQ(g.cfg.model.path, "/cluster/models/DeepSeek-R1-Distill-Qwen-1.5B");
  EXPECT_EQ(g.cfg.data.path, "/cluster/data.json");
  EXPECT_EQ(point(sw, "r16-1e-05").cfg.lora.r, 16);
  const auto& m = point(sw, "mine");
  EXPECT_TRUE(m.base);
  EXPECT_FALSE(m.derived);
  EXPECT_EQ(m.cfg.model.path, "/cluster/models/X-7B");
  EXPECT_DOUBLE_EQ(m.cfg.train.lr, 3e-4);
  EXPECT_EQ(m.cfg.eval.every_steps, 5);
  // A run length in epochs is a fine-tune, and its base evaluation trains for neither.
  write_text(d.tmp / "epochs.toml", "[model]\npath = \"models/E-3B\"\n[train]\nepochs = 2\n");
  const auto ep = read_sweep(d.sweep("[sweep]\nconfig = \"epochs.toml\"\n[grid]\ntrain.lr = [1e-5, 2e-5]\n"));
  ASSERT_EQ(ep.points.size(), 3u);
  EXPECT_FALSE(ep.points[0].base);
  EXPECT_TRUE(point(ep, "base-3b").base);
  EXPECT_EQ(point(ep, "base-3b").cfg.train.epochs, 0);
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\nname = \"x{train.seed}\"\n"
                                                   "[grid]\ntrain.lr = [1e-5]\n")); },
                         {"s.sweep.toml:4", "{train.seed} is not a swept key"}));
}

// --set never silently replaces a point's own value, never turns a base evaluation into a
// fine-tune, and never puts two points in one directory; a base keeps the points' train.seed
// (it chooses the held-out rows the base is measured on).
TEST(Sweep, SetsThatWouldChangeWhatAPointIsAreRefused) {
  SweepDir d;
  const std::string file = "[sweep]\nconfig = \"base.toml\"\n[grid]\ntrain.lr = [1e-5, 2e-5]\ntrain.seed = [5]\n";
  SweepOptions opt;
  opt.sets = {"train.lr=1e-4"};
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(file), opt); },
                         {"point lr1e-05-seed5", "--set train.lr=1e-4 would override the point's own train.lr = 1e-05"}));
  opt.sets = {"train.steps=3"};
  const auto sw = read_sweep(d.sweep(file), opt);
  EXPECT_EQ(point(sw, "lr1e-05-seed5").cfg.train.steps, 3);
  const auto& base = point(sw, "base-1.5b");
  EXPECT_TRUE(base.base) << "--set train.steps leaves the base evaluation one";
  EXPECT_EQ(base.cfg.train.steps, 0);
  EXPECT_EQ(base.cfg.train.seed, 5) << "the base is measured on the points' held-out rows";
  opt.sets = {"output.dir=\"" + d.tmp.path + "/shared\""};
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(file), opt); },
                         {"output.dir = \"" + d.tmp.path + "/shared\" is also point lr1e-05-seed5's"}));
}

// Values whose short labels coincide get names of their own; one model written two ways is one.
TEST(Sweep, ValuesOfOneLabelGetNamesOfTheirOwn) {
  SweepDir d;
  const auto sw = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\n[grid]\n"
                                     "model.path = [\"a/Qwen-7B\", \"b/Llama-7B\"]\n"));
  ASSERT_EQ(sw.points.size(), 4u) << "two fine-tunes, two bases";
  EXPECT_NE(sw.points[0].name, sw.points[1].name);
  EXPECT_EQ(sw.points[0].name.rfind("7b-", 0), 0u) << sw.points[0].name;
  const auto again = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\n[grid]\n"
                                        "model.path = [\"a/Qwen-7B\", \"b/Llama-7B\"]\n"));
  EXPECT_EQ(again.points[0].name, sw.points[0].name) << "the names are stable";
  const auto slash = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\n[grid]\ntrain.lr = [1e-5]\n"
                                        "[[point]]\nname = \"other\"\nmodel.path = \"models/DeepSeek-R1-Distill-Qwen-1.5B/\"\n"));
  EXPECT_EQ(std::count_if(slash.points.begin(), slash.points.end(), [](const SweepPoint& p) { return p.derived; }), 1)
      << "models/X and models/X/ are one model: one base evaluation";
}

TEST(Sweep, BadFilesAreRefusedNamingTheLinePointAndKey) {
  SweepDir d;
  const std::string head = "[sweep]\nconfig = \"base.toml\"\n";
  // An unknown key in an axis, with a suggestion.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\ntrain.lrr = [1e-4]\n")); },
                         {"s.sweep.toml:4", "unknown config key train.lrr", "did you mean train.lr?"}));
  // An empty axis.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\ntrain.lr = [1e-4]\ntrain.steps = []\n")); },
                         {"s.sweep.toml:5", "train.steps", "empty axis"}));
  // A single value where an axis goes.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\ntrain.lr = 1e-4\n")); },
                         {"s.sweep.toml:4", "train.lr", "list of values"}));
  // A value of the wrong type: the point and the key.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\ntrain.steps = [10, \"many\"]\n")); },
                         {"point s", "train.steps", "many"}));
  // A value out of range: the config's own rule.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\ntrain.lr = [1e-4, -1.0]\n")); },
                         {"point lr-1e+00", "train.lr"}));
  // Two points with the same name.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[[point]]\nname = \"a\"\n[[point]]\nname = \"a\"\n")); },
                         {"s.sweep.toml:5", "two points named \"a\"", "s.sweep.toml:3"}));
  // A name that is not a directory name.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[[point]]\nname = \"a/b\"\n")); },
                         {"s.sweep.toml:3", "\"a/b\" is not a directory name"}));
  // Unknown sections and [sweep] keys, a missing base config, no points.
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grids]\ntrain.lr = [1e-4]\n")); }, {"unknown section [grids]"}));
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep("[sweep]\nconfg = \"base.toml\"\n[grid]\ntrain.lr = [1e-4]\n")); },
                         {"s.sweep.toml:2", "[sweep] confg"}));
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep("[sweep]\nconfig = \"nope.toml\"\n[grid]\ntrain.lr = [1e-4]\n")); },
                         {"point lr1e-04", "nope.toml", "cannot open config file"}));
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head)); }, {"no points"}));
  // A grid past the limit is refused from its axes' sizes, before it is expanded: 10^12
  // points here, which could not be held in memory.
  auto axis = [](const std::string& key, int n, int first) {
    std::string t = key + " = [";
    for (int i = 0; i < n; ++i) t += (i ? ", " : "") + std::to_string(first + i);
    return t + "]\n";
  };
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid]\n" + axis("train.steps", 101, 1) + axis("lora.r", 100, 1))); },
                         {"s.sweep.toml:3", "[grid] has 10100 points (101 train.steps x 100 lora.r), more than the 10000"}));
  EXPECT_TRUE(ThrowsWith([&] {
                read_sweep(d.sweep(head + "[grid]\n" + axis("train.steps", 1000, 1) + axis("lora.r", 1000, 1) +
                                   axis("lora.alpha", 1000, 1) + axis("train.seed", 1000, 1)));
              },
              {"[grid] has 1000000000000 points"}));
  EXPECT_TRUE(ThrowsWith([&] { read_sweep(d.sweep(head + "[grid\n")); }, {"s.sweep.toml:3"}));
}

TEST(Sweep, ValueLabelsAreShortAndStable) {
  EXPECT_EQ(sweep_value_label("train.lr", "5e-06"), "5e-06");
  EXPECT_EQ(sweep_value_label("train.lr", "0.0002"), "2e-04");
  EXPECT_EQ(sweep_value_label("train.lr", "2.5e-4"), "2.5e-04");
  EXPECT_EQ(sweep_value_label("lora.dropout", "0.05"), "0.05");
  EXPECT_EQ(sweep_value_label("train.steps", "30"), "30");
  EXPECT_EQ(sweep_value_label("model.path", "\"/m/DeepSeek-R1-Distill-Qwen-14B/\""), "14b");
  EXPECT_EQ(sweep_value_label("model.path", "\"mymodel\""), "mymodel");
  EXPECT_EQ(sweep_value_label("data.path", "\"a/b c.json\""), "a_b_c.json");
}

TEST(Sweep, PlanAndStatusReadWhatTheJobScriptRecords) {
  SweepDir d;
  const auto sw = read_sweep(d.sweep("[sweep]\nconfig = \"base.toml\"\nout = \"" + d.tmp.path + "/out\"\n"
                                     "[grid]\ntrain.lr = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4]\n"));
  write_sweep_plan(sw);
  const std::string out = d.tmp.path + "/out";
  const auto manifest = nlohmann::json::parse(read_text(out + "/sweep.json"));
  EXPECT_EQ(manifest["format"], "r1dist-sweep");
  EXPECT_EQ(manifest["tuned"], 5);
  EXPECT_EQ(manifest["base"], 1);
  const auto tsv = read_text(out + "/points.tsv");
  EXPECT_NE(tsv.find("4\ttuned\tlr5e-04\t" + out + "/configs/lr5e-04.toml\t" + out + "/lr5e-04\n"), std::string::npos) << tsv;
  EXPECT_NE(tsv.find("0\tbase\tbase-1.5b\t"), std::string::npos) << tsv;
  // Each written config is the point's, every key resolved.
  EXPECT_EQ(load_config(out + "/configs/lr3e-04.toml"), point(sw, "lr3e-04").cfg);

  auto record = [&](const std::string& name, const std::string& lines) {
    make_dirs(out + "/" + name);
    write_text(out + "/" + name + "/attempts.tsv", lines);
  };
  record("lr1e-04", "start\t1\tt\th\t1\nend\t1\tt\t0\t0\t10\t\n");
  record("lr2e-04", "start\t1\tt\th\t1\nend\t1\tt\t75\t0\t4\t\nstart\t2\tt\th\t1\nend\t2\tt\t2\t4\t4\tdata.path: no such file\n");
  record("lr3e-04", "start\t1\tt\th\t1\nend\t1\tt\t75\t0\t4\t\n");
  record("lr4e-04", "start\t1\tt\th\t1\n");
  const auto st = sweep_status(out);
  ASSERT_EQ(st.size(), 6u);
  std::map<std::string, PointStatus> by;
  for (const auto& s : st) by[s.name] = s;
  EXPECT_EQ(by["lr1e-04"].state, "done");
  EXPECT_EQ(by["lr2e-04"].state, "failed");
  EXPECT_EQ(by["lr2e-04"].attempts, 2);
  EXPECT_NE(by["lr2e-04"].detail.find("exit 2: data.path: no such file"), std::string::npos) << by["lr2e-04"].detail;
  EXPECT_EQ(by["lr3e-04"].state, "stopped");
  EXPECT_EQ(by["lr4e-04"].state, "interrupted");
  EXPECT_EQ(by["lr5e-04"].state, "not started");
  EXPECT_EQ(by["base-1.5b"].kind, "base");
  EXPECT_TRUE(ThrowsWith([&] { sweep_status(d.tmp.path); }, {"has no sweep.json"}));
}
