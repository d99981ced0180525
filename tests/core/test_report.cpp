// The /eval group (formats/eval_file.h) and `r1dist report` (report/): results round-trip
// through HDF5 without disturbing the metrics tables; each verdict rule fires on a run made
// to meet it; the report files and plots are written.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/manifest.h"
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

// A run directory as the trainer leaves it: run.json, metrics.h5 (+ /eval). `settings`: more
// run.json members (e.g. "\"lr\": 1e-4, \"lora_r\": 8"; lr defaults to 2e-4); `subdir`: the
// directory under root when it is not the name.
std::string make_run(const std::string& root, const std::string& name, const std::string& model, int64_t steps,
                     const EvalSummary* eval, const std::string& settings = "", const std::string& subdir = "") {
  const std::string dir = root + "/" + (subdir.empty() ? name : subdir);
  std::filesystem::create_directories(dir);
  const bool lr = settings.find("\"lr\"") != std::string::npos;
  std::ofstream(dir + "/run.json") << "{\"name\": \"" << name << "\", \"model_path\": \"" << model
                                   << "\", \"model_hash\": \"h-" << model << "\", " << (lr ? "" : "\"lr\": 0.0002, ")
                                   << "\"steps\": " << steps << (settings.empty() ? "" : ", " + settings) << "}";
  {
    MetricsWriter w(dir + "/metrics.h5", false, 0);
    for (int64_t s = 1; s <= steps; ++s) w.append(StepRecord{s, 2.0 - 0.01 * double(s), 2e-4, 1.0, 100, 1, 100, 0});
    w.append(EvalRecord{steps, eval ? eval->loss : 2.0, eval ? eval->kl : 0.0, 500});
  }
  if (eval) write_eval_group(dir + "/metrics.h5", *eval);
  if (steps > 0) {  // a fine-tune's exported adapter, as the trainer leaves it at its last step
    std::filesystem::create_directories(dir + "/adapter");
    std::ofstream(dir + "/adapter/adapter_model.safetensors") << "weights";
    write_manifest(dir + "/adapter", {"adapter_model.safetensors"}, {{"step", std::to_string(steps)}});
  }
  return dir;
}

// An /eval group of format r1dist-eval-1 (groups 0..n-1, the prompt a dataset, `stopped`,
// `mcq_low/high`), made from a format-2 one by renaming, still reads.
TEST(EvalFile, AFormatOneGroupStillReads) {
  test::TempDir tmp;
  auto s = summary(1.5, 0.02, 0.55, false);
  s.generations[0].stopped_at_eos = true;
  const std::string path = tmp / "eval.h5";
  write_eval_group(path, s);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t g = H5Gopen2(f, "eval", H5P_DEFAULT);
  ASSERT_GE(H5Arename(g, "mcq_ci95_low", "mcq_low"), 0);
  ASSERT_GE(H5Arename(g, "mcq_ci95_high", "mcq_high"), 0);
  const std::string one = "r1dist-eval-1";
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, one.size());
  H5Tset_cset(t, H5T_CSET_UTF8);
  ASSERT_GE(H5Adelete(g, "format"), 0);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(g, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Awrite(a, t, one.data()), 0);
  H5Aclose(a);
  H5Tclose(t);
  const hid_t gens = H5Gopen2(g, "generations", H5P_DEFAULT);
  char name[256] = {};
  ASSERT_GT(H5Lget_name_by_idx(gens, ".", H5_INDEX_NAME, H5_ITER_INC, 0, name, sizeof name, H5P_DEFAULT), 0);
  EXPECT_EQ(std::string(name).rfind("00-28岁程序员", 0), 0u) << name;
  ASSERT_GE(H5Lmove(gens, name, gens, "0", H5P_DEFAULT, H5P_DEFAULT), 0);
  const hid_t g0 = H5Gopen2(gens, "0", H5P_DEFAULT);
  ASSERT_GE(H5Arename(g0, "stopped_at_eos", "stopped"), 0);
  const std::string& prompt = s.generations[0].prompt;
  ASSERT_GE(H5Adelete(g0, "prompt"), 0);
  t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, prompt.size());
  H5Tset_cset(t, H5T_CSET_UTF8);
  const hid_t d = H5Dcreate2(g0, "prompt", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, prompt.data()), 0);
  H5Dclose(d);
  H5Tclose(t);
  H5Sclose(sp);
  H5Gclose(g0);
  H5Gclose(gens);
  H5Gclose(g);
  H5Fclose(f);
  const auto back = read_eval_group(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->mcq.low, s.mcq.low);
  EXPECT_EQ(back->mcq.high, s.mcq.high);
  ASSERT_EQ(back->generations.size(), 1u);
  EXPECT_EQ(back->generations[0].prompt, prompt);
  EXPECT_TRUE(back->generations[0].stopped_at_eos);
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
  // A point that failed or was killed at step 3 of 5 (no early stop recorded), one whose
  // adapter is an earlier stop's, one stopped by the drift guard, one of another seed.
  const std::string killed = make_run(tmp.path, "killed", "m", 5, &better);
  { MetricsWriter w(killed + "/metrics.h5", true, 3); }  // its history ends at step 3
  runs.push_back(read_run(killed));
  const std::string stale = make_run(tmp.path, "stale", "m", 5, &better);
  write_manifest(stale + "/adapter", {"adapter_model.safetensors"}, {{"step", "3"}});
  runs.push_back(read_run(stale));
  const std::string guard = make_run(tmp.path, "guard", "m", 5, &better);
  {
    MetricsWriter w(guard + "/metrics.h5", true, 5);
    w.set_attr("stop_reason", "eval.max_kl: the drift KL 0.9 exceeds 0.5 at step 5");
  }
  runs.push_back(read_run(guard));
  runs.push_back(read_run(make_run(tmp.path, "seed2", "m", 5, &better, "\"eval_row_ids\": [1, 2], \"data_path\": \"d\"")));
  const std::string rows_12 = "\"eval_row_ids\": [1, 2], \"data_path\": \"d\"";
  runs.push_back(read_run(make_run(tmp.path, "base2", "m2", 0, &base_s, rows_12)));
  runs.push_back(read_run(make_run(tmp.path, "same_rows", "m2", 5, &better, rows_12)));
  runs.push_back(read_run(make_run(tmp.path, "other_rows", "m2", 5, &better, "\"eval_row_ids\": [3, 4], \"data_path\": \"d\"")));
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
  EXPECT_EQ(verdict["killed"], "incomplete");
  EXPECT_EQ(verdict["stale"], "incomplete");
  EXPECT_EQ(verdict["guard"], "drifted");
  // The base records no row ids (an older run.json): comparable; one that does, other rows: not.
  EXPECT_EQ(verdict["seed2"], "better");
  EXPECT_EQ(verdict["same_rows"], "better");
  EXPECT_EQ(verdict["other_rows"], "no comparable base");
  for (const auto& r : rows)
    if (r.run->name == "other_rows") EXPECT_TRUE(std::isnan(r.loss_delta_pct)) << "no difference to a base of other rows";
  // None of them is ever recommended.
  for (const auto& g : group_by_base(rows))
    if (g.recommended)
      for (const char* bad : {"killed", "stale", "guard", "other_rows"}) EXPECT_NE(g.recommended->run->name, bad);
  EXPECT_NEAR(rows[6].loss_delta, -0.2, 1e-12);
  EXPECT_NEAR(rows[6].loss_delta_pct, -10.0, 1e-9) << "Δ in % of the base's loss";

  const auto files = write_report(runs, tmp / "report", "test report");
  const auto md = test::read_text(files.markdown);
  for (const auto& r : rows) EXPECT_NE(md.find("| " + r.run->name + " |"), std::string::npos) << r.run->name;
  EXPECT_NE(md.find("**forgot**: MCQ accuracy -40.0 points vs the base"), std::string::npos) << md;
  EXPECT_NE(md.find("### collapsed"), std::string::npos) << "the standard prompt's answer";
  EXPECT_NE(md.find("| -10.00% |"), std::string::npos) << "the better run's Δ loss in %: " << md;
  EXPECT_NE(test::read_text(files.html).find("<td><strong>yes</strong></td>"), std::string::npos);
  if (test::on_path("gnuplot")) {
    // Nothing varies among the tuned runs: loss against KL, KL curves, loss curves.
    ASSERT_EQ(files.plots.size(), 3u);
    for (const auto& p : files.plots) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p;
      EXPECT_GT(std::filesystem::file_size(p), 2000u) << p;
      EXPECT_EQ(test::read_text(p).substr(1, 3), "PNG") << p;
    }
  }
}

// `summary` with a second generation that loops on a prompt of its own (the first, the
// standard prompt's answer, stays ordinary): the report must name the second.
EvalSummary collapsing_on_second_prompt(double loss, double kl, double mcq) {
  auto s = summary(loss, kl, mcq, false);
  GenerationResult g;
  g.prompt = "List the causes of dizziness";
  g.text = "dizzy dizzy dizzy dizzy dizzy dizzy";
  std::vector<int64_t> toks;
  for (int i = 0; i < 64; ++i) toks.push_back(i % 3);
  g.tokens = 64;
  g.repetition = measure_repetition(toks);
  s.generations.push_back(g);
  return s;
}

std::string name_of(const VersionRow* v) { return v ? v->run->name : "none"; }

// Two base models, each with a tuned run for every way to fail and two acceptable ones; the
// rule picks the acceptable run with the lowest held-out loss, never the collapsed one with
// the lowest loss of all.
TEST(Report, RecommendsTheAcceptableRunWithTheLowestLossPerBaseModel) {
  test::TempDir tmp;
  std::vector<RunRecord> runs;
  std::vector<EvalSummary> s;
  for (const std::string m : {"a", "b"}) {
    const auto base = summary(2.0, 0.0, 0.60, false);
    const auto collapsed = collapsing_on_second_prompt(1.2, 0.01, 0.60);  // the lowest loss, collapsed
    const auto drifted = summary(1.3, 0.9, 0.60, false);
    const auto forgot = summary(1.4, 0.01, 0.20, false);
    const auto worse = summary(2.1, 0.01, 0.60, false);
    // a: two "better" runs; b: two "close to base" runs (within 1% of the base's loss).
    const auto good_high = summary(m == "a" ? 1.9 : 2.005, 0.05, 0.60, false);
    const auto good_low = summary(m == "a" ? 1.8 : 1.995, 0.05, 0.60, false);
    runs.push_back(read_run(make_run(tmp.path, m + "-base", "models/" + m, 0, &base)));
    runs.push_back(read_run(make_run(tmp.path, m + "-collapsed", "models/" + m, 5, &collapsed, "\"lr\": 1e-3")));
    runs.push_back(read_run(make_run(tmp.path, m + "-drifted", "models/" + m, 5, &drifted, "\"lr\": 5e-4")));
    runs.push_back(read_run(make_run(tmp.path, m + "-forgot", "models/" + m, 5, &forgot, "\"lr\": 2e-4")));
    runs.push_back(read_run(make_run(tmp.path, m + "-worse", "models/" + m, 5, &worse, "\"lr\": 1e-4")));
    runs.push_back(read_run(make_run(tmp.path, m + "-good-high", "models/" + m, 5, &good_high, "\"lr\": 5e-5")));
    runs.push_back(read_run(make_run(tmp.path, m + "-good-low", "models/" + m, 5, &good_low, "\"lr\": 2e-5")));
  }
  const auto rows = compare_runs(runs);
  std::map<std::string, std::string> verdict;
  for (const auto& r : rows) verdict[r.run->name] = r.verdict;
  ASSERT_EQ(verdict["a-collapsed"], "collapsed");
  ASSERT_EQ(verdict["b-drifted"], "drifted");
  ASSERT_EQ(verdict["a-forgot"], "forgot");
  ASSERT_EQ(verdict["b-worse"], "worse");
  ASSERT_EQ(verdict["a-good-low"], "better");
  ASSERT_EQ(verdict["b-good-low"], "close to base");
  ASSERT_EQ(verdict["b-good-high"], "close to base");

  const auto groups = group_by_base(rows);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].model, "models/a");
  EXPECT_EQ(groups[1].model, "models/b");
  for (const auto& g : groups) {
    ASSERT_NE(g.base, nullptr);
    EXPECT_EQ(g.rows.size(), 7u);
    EXPECT_TRUE(g.rows.front()->run->base) << "the base row first";
    EXPECT_EQ(name_of(recommend(g.rows)), name_of(g.recommended));
  }
  EXPECT_EQ(name_of(groups[0].recommended), "a-good-low");
  EXPECT_EQ(name_of(groups[1].recommended), "b-good-low");

  const auto files = write_report(runs, tmp / "report", "two models");
  const auto md = test::read_text(files.markdown);
  EXPECT_NE(md.find("**Recommended: a-good-low**"), std::string::npos) << md;
  EXPECT_NE(md.find("**Recommended: b-good-low**"), std::string::npos) << md;
  EXPECT_NE(md.find("lowest held-out loss among those whose verdict"), std::string::npos) << "the rule is printed";
  EXPECT_NE(md.find("## Base model `models/a`"), std::string::npos) << md;
  EXPECT_NE(md.find("## Base model `models/b`"), std::string::npos) << md;
  EXPECT_LT(md.find("| a-good-low |"), md.find("## Base model `models/b`")) << "a's runs in a's section";
  EXPECT_GT(md.find("| b-good-low |"), md.find("## Base model `models/b`")) << "b's runs in b's section";
  EXPECT_NE(md.find("| -10.00% |"), std::string::npos) << "a-good-low's Δ loss in % of the base's";
  // The collapse: the second prompt triggered it, not the standard prompt shown for every run.
  const auto collapse = md.find("## Collapsed generations");
  ASSERT_NE(collapse, std::string::npos);
  EXPECT_NE(md.find("Generation 2 of 2 is the first flagged as collapsed", collapse), std::string::npos) << md;
  EXPECT_NE(md.find("List the causes of dizziness", collapse), std::string::npos) << md;
  EXPECT_NE(md.find("dizzy dizzy dizzy", collapse), std::string::npos) << md;
  if (test::on_path("gnuplot")) {
    // lr varies among the tuned runs: a plot against it, on a log axis.
    EXPECT_TRUE(std::filesystem::exists(tmp / "report/setting_lr.png"));
    EXPECT_FALSE(std::filesystem::exists(tmp / "report/setting_steps.png")) << "steps do not vary";
    const auto gp = test::read_text(tmp / "report/plot_data/report.gp");
    EXPECT_NE(gp.find("set logscale x"), std::string::npos);
    EXPECT_NE(gp.find("set arrow from 0.5, graph 0 to 0.5, graph 1"), std::string::npos) << "the drift threshold";
    EXPECT_NE(gp.find("first 2.02 to graph 1, first 2.02"), std::string::npos) << "the bases' worse threshold";
    EXPECT_NE(gp.find("set xrange [0:"), std::string::npos) << "KL axis from 0";
  }
}

TEST(Report, RecommendsNoneWhenEveryFineTuneDamagedTheModel) {
  test::TempDir tmp;
  const auto base = summary(2.0, 0.0, 0.60, false);
  const auto collapsed = summary(1.5, 0.01, 0.60, true);
  const auto worse = summary(2.1, 0.01, 0.60, false);
  const auto drifted = summary(1.9, 0.9, 0.60, false);
  const auto other_base = summary(3.0, 0.0, 0.50, false);
  std::vector<RunRecord> runs;
  runs.push_back(read_run(make_run(tmp.path, "base", "m", 0, &base)));
  runs.push_back(read_run(make_run(tmp.path, "collapsed", "m", 5, &collapsed)));
  runs.push_back(read_run(make_run(tmp.path, "worse", "m", 5, &worse)));
  runs.push_back(read_run(make_run(tmp.path, "drifted", "m", 5, &drifted)));
  runs.push_back(read_run(make_run(tmp.path, "lonely-base", "n", 0, &other_base)));
  runs.push_back(read_run(make_run(tmp.path, "orphan", "o", 5, &worse)));
  const auto rows = compare_runs(runs);
  const auto groups = group_by_base(rows);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].recommended, nullptr);
  EXPECT_EQ(recommend(groups[0].rows), nullptr);
  EXPECT_EQ(groups[1].recommended, nullptr) << "a base alone";
  EXPECT_EQ(groups[2].base, nullptr) << "the runs without a base last";
  ASSERT_EQ(groups[2].rows.size(), 1u);
  EXPECT_EQ(groups[2].rows[0]->verdict, "no base to compare");
  EXPECT_EQ(recommend(groups[2].rows), nullptr) << "an unjudged run is never recommended";
  const auto md = test::read_text(write_report(runs, tmp / "report", "t").markdown);
  EXPECT_NE(md.find("`m`: **Recommended: none**: every fine-tune of this model collapsed, forgot, got worse or "
                    "drifted: keep the base"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("`n`: **Recommended: none**: no fine-tune of this model"), std::string::npos) << md;
  EXPECT_NE(md.find("## Runs without a base in this report"), std::string::npos) << md;
}

TEST(Report, RunsOfTheSameNameAreWarnedAboutWithBothDirectories) {
  test::TempDir tmp;
  const auto base = summary(2.0, 0.0, 0.60, false);
  const auto one = summary(1.9, 0.01, 0.60, false), two = summary(1.8, 0.01, 0.60, false);
  std::vector<RunRecord> runs;
  runs.push_back(read_run(make_run(tmp.path, "base", "m", 0, &base)));
  const auto a = make_run(tmp.path, "v3", "m", 5, &one, "", "sweep-a/v3");
  const auto b = make_run(tmp.path, "v3", "m", 5, &two, "", "sweep-b/v3");
  runs.push_back(read_run(a));
  runs.push_back(read_run(b));
  const auto files = write_report(runs, tmp / "report", "t");
  ASSERT_EQ(files.warnings.size(), 1u);
  EXPECT_NE(files.warnings[0].find("2 runs are named \"v3\": " + a + ", " + b), std::string::npos) << files.warnings[0];
  EXPECT_TRUE(duplicate_names({runs[0], runs[1]}).empty());
  const auto md = test::read_text(files.markdown);
  const auto warning = md.find("> **Warning:** 2 runs are named `v3`: `" + a + "`, `" + b + "`");
  EXPECT_NE(warning, std::string::npos) << md;
  EXPECT_LT(warning, md.find("## ")) << "at the top";
  EXPECT_NE(md.find("| v3 | `" + a + "` |"), std::string::npos) << "the directory column tells them apart";
  EXPECT_NE(md.find("| v3 | `" + b + "` |"), std::string::npos);
  EXPECT_EQ(name_of(group_by_base(compare_runs(runs))[0].recommended), "v3");
  EXPECT_NE(md.find("**Recommended: v3** (`" + b + "`)"), std::string::npos) << "named by its directory";
}

// Models of one shape share their config.json hash: the weights fingerprint tells them apart,
// while the same model under another path (moved, copied) is still its base.
TEST(Report, ModelsOfOneShapeAreTwoBaseModelsAndAMovedModelIsOne) {
  test::TempDir tmp;
  const auto base = summary(2.0, 0.0, 0.60, false), tuned = summary(1.9, 0.01, 0.60, false);
  std::vector<RunRecord> runs;
  runs.push_back(read_run(make_run(tmp.path, "base-1.5b", "m/1.5B", 0, &base)));
  runs.push_back(read_run(make_run(tmp.path, "base-7b", "m/7B", 0, &base)));
  runs.push_back(read_run(make_run(tmp.path, "tuned-7b", "copy/7B", 5, &tuned)));
  for (auto& r : runs) r.model_hash = "same-shape";
  runs[0].weights_fingerprint = "w1";
  runs[1].weights_fingerprint = runs[2].weights_fingerprint = "w7";
  const auto rows = compare_runs(runs);
  ASSERT_NE(rows[2].base, nullptr);
  EXPECT_EQ(rows[2].base->name, "base-7b");
  const auto groups = group_by_base(rows);
  ASSERT_EQ(groups.size(), 2u) << "two base models, not one";
  EXPECT_EQ(groups[1].rows.size(), 2u);
  // A sweep's points without results end the report, in both formats.
  const auto files = write_report(runs, tmp / "report", "t", {"lr1e-04 (runs/x/lr1e-04): failed, exit 2: no data"});
  EXPECT_NE(test::read_text(files.markdown).find("## Runs without results\n\n- lr1e-04 (runs/x/lr1e-04): failed"),
            std::string::npos);
  EXPECT_NE(test::read_text(files.html).find("lr1e-04 (runs/x/lr1e-04): failed, exit 2: no data"), std::string::npos);
}

TEST(Report, TheHtmlIsTheMarkdownRenderedWithThePlotsEmbedded) {
  test::TempDir tmp;
  const auto base = summary(2.0, 0.0, 0.60, false);
  const auto tuned = summary(1.8, 0.05, 0.60, false);
  const auto looping = collapsing_on_second_prompt(1.7, 0.05, 0.60);
  std::vector<RunRecord> runs;
  runs.push_back(read_run(make_run(tmp.path, "base", "m", 0, &base)));
  runs.push_back(read_run(make_run(tmp.path, "v1_lr", "m", 5, &tuned, "\"lora_r\": 8")));
  runs.push_back(read_run(make_run(tmp.path, "v2", "m", 6, &looping, "\"lora_r\": 16")));
  const auto files = write_report(runs, tmp / "report", "Sweep <1> & *all*");
  const auto md = test::read_text(files.markdown), html = test::read_text(files.html);
  EXPECT_NE(html.find("<table>"), std::string::npos) << "the GFM table extension is on";
  EXPECT_NE(html.find("<td>v1_lr</td>"), std::string::npos) << html;
  EXPECT_NE(html.find("<h1>Sweep &lt;1&gt; &amp; *all*</h1>"), std::string::npos) << "the title as text";
  EXPECT_EQ(html.find("**"), std::string::npos) << "no Markdown left unrendered";
  EXPECT_NE(md.find("0.600 [0.39, 0.78] (12/20)"), std::string::npos) << "accuracy, 95% interval, counts";
  EXPECT_NE(html.find("0.600 [0.39, 0.78] (12/20)"), std::string::npos);
  EXPECT_NE(html.find("-10.00%"), std::string::npos) << "Δ loss in %";
  EXPECT_NE(html.find("List the causes of dizziness"), std::string::npos) << "the prompt behind the collapse flag";
  EXPECT_NE(md.find("| LoRA r |"), std::string::npos) << "lora r varies: a column";
  EXPECT_NE(md.find("| 16 |"), std::string::npos);
  EXPECT_NE(html.find("display:block;overflow-x:auto"), std::string::npos) << "wide tables scroll inside themselves";
  if (test::on_path("gnuplot")) {
    EXPECT_NE(md.find("](loss_vs_kl.png)"), std::string::npos) << "report.md references the PNG beside it";
    EXPECT_NE(md.find("](setting_lora_r.png)"), std::string::npos);
    EXPECT_NE(md.find("](setting_steps.png)"), std::string::npos);
    EXPECT_EQ(html.find("src=\"loss_vs_kl.png\""), std::string::npos) << "report.html stands alone";
    size_t images = 0;
    for (auto p = html.find("<img src=\"data:image/png;base64,iVBORw0KGgo"); p != std::string::npos;
         p = html.find("<img src=\"data:image/png;base64,iVBORw0KGgo", p + 1))
      ++images;
    EXPECT_EQ(images, files.plots.size());
    EXPECT_EQ(files.plots.size(), 5u) << "loss vs KL, lora r, steps, KL curves, loss curves";
  } else {
    EXPECT_NE(md.find("No plots: gnuplot is not installed"), std::string::npos);
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
