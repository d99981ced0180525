// The /eval group (formats/eval_file.h) and `r1dist report` (report/): results round-trip
// through HDF5 without disturbing the metrics tables; each verdict rule fires on a run made
// to meet it; the report files and plots are written.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/report/report.h"
#include "support/process.h"
#include "support/temp.h"

namespace r1dist {
namespace {

EvalSummary summary(double loss, double kl, double mcq, bool loop) {
  EvalSummary s;
  s.model = "models/m";
  s.adapter = kl > 0 ? "runs/x/adapter" : "";
  s.data = "data.jsonl";
  s.rows = 8;
  s.loss = loss;
  s.perplexity = std::exp(loss);
  s.loss_tokens = 1000;
  s.has_drift = kl > 0;
  s.kl = kl;
  s.top1_agreement = 0.9;
  s.has_mcq = true;
  s.mcq = wilson_accuracy(int64_t(std::lround(mcq * 20)), 20);
  GenerationResult g;
  g.prompt = "28岁程序员，常年熬夜，头晕目眩，恶心";
  g.text = loop ? "好好好好好好" : "<think>\n考虑睡眠不足。\n</think>\n建议休息。";
  std::vector<int64_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back(loop ? i % 2 : i);
  g.tokens = 64;
  g.think_closed = !loop;
  g.repetition = measure_repetition(toks);
  s.generations.push_back(g);
  return s;
}

// A run directory as the trainer leaves it: run.json, metrics.h5 (+ /eval).
std::string make_run(const std::string& root, const std::string& name, const std::string& model, int64_t steps,
                     const EvalSummary* eval) {
  const std::string dir = root + "/" + name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/run.json") << "{\"name\": \"" << name << "\", \"model_path\": \"" << model
                                   << "\", \"model_hash\": \"h-" << model << "\", \"lr\": 0.0002, \"steps\": " << steps
                                   << "}";
  {
    MetricsWriter w(dir + "/metrics.h5", false, 0);
    for (int64_t s = 1; s <= steps; ++s) w.append(StepRecord{s, 2.0 - 0.01 * double(s), 2e-4, 1.0, 100, 1, 100, 0});
    w.append(EvalRecord{steps, eval ? eval->loss : 2.0, eval ? eval->kl : 0.0, 500});
  }
  if (eval) write_eval_group(dir + "/metrics.h5", *eval);
  return dir;
}

TEST(EvalFile, RoundTripsAndKeepsTheMetricsTables) {
  test::TempDir tmp;
  const auto s = summary(1.5, 0.02, 0.55, true);
  const auto dir = make_run(tmp.path, "v1", "m", 3, &s);
  const auto back = read_eval_group(dir + "/metrics.h5");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->model, s.model);
  EXPECT_EQ(back->adapter, s.adapter);
  EXPECT_DOUBLE_EQ(back->loss, s.loss);
  EXPECT_DOUBLE_EQ(back->kl, s.kl);
  EXPECT_EQ(back->mcq.correct, 11);
  ASSERT_EQ(back->generations.size(), 1u);
  EXPECT_EQ(back->generations[0].prompt, s.generations[0].prompt);
  EXPECT_EQ(back->generations[0].text, s.generations[0].text);
  EXPECT_TRUE(back->generations[0].repetition.collapsed);
  EXPECT_TRUE(back->collapsed());
  const auto m = read_metrics(dir + "/metrics.h5");
  EXPECT_EQ(m.steps.size(), 3u) << "the metrics tables survive the /eval write";
  // Written again: replaced, not duplicated.
  auto s2 = s;
  s2.loss = 1.25;
  s2.generations.clear();
  write_eval_group(dir + "/metrics.h5", s2);
  const auto again = read_eval_group(dir + "/metrics.h5");
  EXPECT_DOUBLE_EQ(again->loss, 1.25);
  EXPECT_TRUE(again->generations.empty());
  EXPECT_FALSE(read_eval_group(make_run(tmp.path, "plain", "m", 2, nullptr) + "/metrics.h5").has_value());
  if (test::on_path("h5dump")) {
    const auto r = test::run_command("h5dump -g /eval " + dir + "/metrics.h5");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("mcq_accuracy"), std::string::npos);
  }
}

TEST(Report, EachVerdictRuleFiresOnARunMadeToMeetIt) {
  test::TempDir tmp;
  const auto base_s = summary(2.0, 0.0, 0.60, false);
  std::vector<RunRecord> runs;
  runs.push_back(read_run(make_run(tmp.path, "base", "m", 0, &base_s)));
  const auto collapsed = summary(1.5, 0.01, 0.60, true);
  const auto forgot = summary(1.5, 0.01, 0.20, false);  // 4 of 20: interval up to 0.42 < 0.60
  const auto noisy = summary(1.5, 0.01, 0.45, false);   // 9 of 20: interval up to 0.66, noise
  const auto worse = summary(2.1, 0.01, 0.60, false);
  const auto drifted = summary(1.98, 0.9, 0.60, false);
  const auto better = summary(1.8, 0.05, 0.60, false);
  const auto close = summary(1.995, 0.001, 0.60, false);
  const auto orphan = summary(1.0, 0.01, 0.60, false);
  runs.push_back(read_run(make_run(tmp.path, "collapsed", "m", 5, &collapsed)));
  runs.push_back(read_run(make_run(tmp.path, "forgot", "m", 5, &forgot)));
  runs.push_back(read_run(make_run(tmp.path, "worse", "m", 5, &worse)));
  runs.push_back(read_run(make_run(tmp.path, "noisy", "m", 5, &noisy)));
  runs.push_back(read_run(make_run(tmp.path, "drifted", "m", 5, &drifted)));
  runs.push_back(read_run(make_run(tmp.path, "better", "m", 5, &better)));
  runs.push_back(read_run(make_run(tmp.path, "close", "m", 5, &close)));
  runs.push_back(read_run(make_run(tmp.path, "orphan", "other", 5, &orphan)));
  runs.push_back(read_run(make_run(tmp.path, "noeval", "m", 5, nullptr)));
  const auto rows = compare_runs(runs);
  std::map<std::string, std::string> verdict;
  for (const auto& r : rows) verdict[r.run->name] = r.verdict;
  EXPECT_EQ(verdict["base"], "base");
  EXPECT_EQ(verdict["collapsed"], "collapsed");
  EXPECT_EQ(verdict["forgot"], "forgot");
  EXPECT_EQ(verdict["worse"], "worse");
  EXPECT_EQ(verdict["noisy"], "better") << "a 15-point drop on 20 items is within its interval";
  EXPECT_EQ(verdict["drifted"], "drifted");
  EXPECT_EQ(verdict["better"], "better");
  EXPECT_EQ(verdict["close"], "close to base");
  EXPECT_EQ(verdict["orphan"], "no base to compare");
  EXPECT_EQ(verdict["noeval"], "close to base") << "last in-training eval: loss 2.0 = the base's";
  EXPECT_NEAR(rows[6].loss_delta, -0.2, 1e-12);

  const auto files = write_report(runs, tmp / "report", "test report");
  const auto md = test::read_text(files.markdown);
  for (const auto& r : rows) EXPECT_NE(md.find("| " + r.run->name + " |"), std::string::npos) << r.run->name;
  EXPECT_NE(md.find("**forgot**: MCQ accuracy -40.0 points vs the base"), std::string::npos) << md;
  EXPECT_NE(md.find("### collapsed"), std::string::npos) << "the standard prompt's answer";
  EXPECT_NE(test::read_text(files.html).find("<td class=\"collapsed\">yes"), std::string::npos);
  if (test::on_path("gnuplot")) {
    ASSERT_EQ(files.plots.size(), 3u);
    for (const auto& p : files.plots) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p;
      EXPECT_GT(std::filesystem::file_size(p), 2000u) << p;
      EXPECT_EQ(test::read_text(p).substr(1, 3), "PNG") << p;
    }
  }
}

TEST(Report, ADirectoryWithoutARunIsRefusedByName) {
  test::TempDir tmp;
  try {
    read_run(tmp.path);
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(tmp.path + " has no run.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace r1dist
