// The per-run metrics file (formats/metrics.h): rows, counters and texts round trip, the
// file describes itself (root attributes, config, units), older layouts read, a newer
// format is refused, a resume drops the rows after its checkpoint, a writer killed mid-run keeps
// every completed row, and h5dump reads it (the r1dist binary's `metrics` command is tested
// in tests/e2e/test_cli.cpp).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "r1dist/base/error.h"
#include "r1dist/formats/metrics.h"
#include "support/process.h"
#include "support/temp.h"

namespace {

using namespace r1dist;
using r1dist::test::TempDir;
using r1dist::test::ThrowsWith;
using r1dist::test::on_path;


StepRecord step_row(int64_t k) {
  StepRecord r;
  r.step = k;
  r.loss = 2.0 / double(k + 1);
  r.lr = 1e-4 * double(k);
  r.grad_norm = 0.5 + double(k) * 1e-3;
  r.tokens = 1000 + k;
  r.step_time_s = 1.25;
  r.tokens_per_s = 800.0 + double(k);
  r.mem_gb = 12.5;
  r.real_tokens = 1500 + k;
  r.slot_tokens = 2000 + k;
  r.real_tokens_per_s = 1200.0 + double(k);
  r.slot_tokens_per_s = 1600.0 + double(k);
  r.padding_share = 0.25;
  return r;
}

EvalRecord eval_row(int64_t k) { return EvalRecord{k, 1.0 / double(k), 0.01 * double(k), 5000 + k}; }

void expect_steps(const std::vector<StepRecord>& got, const std::vector<int64_t>& steps) {
  ASSERT_EQ(got.size(), steps.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto want = step_row(steps[i]);
    EXPECT_EQ(got[i].step, want.step);
    EXPECT_EQ(got[i].loss, want.loss);
    EXPECT_EQ(got[i].lr, want.lr);
    EXPECT_EQ(got[i].grad_norm, want.grad_norm);
    EXPECT_EQ(got[i].tokens, want.tokens);
    EXPECT_EQ(got[i].step_time_s, want.step_time_s);
    EXPECT_EQ(got[i].tokens_per_s, want.tokens_per_s);
    EXPECT_EQ(got[i].mem_gb, want.mem_gb);
    EXPECT_EQ(got[i].real_tokens, want.real_tokens);
    EXPECT_EQ(got[i].slot_tokens, want.slot_tokens);
    EXPECT_EQ(got[i].real_tokens_per_s, want.real_tokens_per_s);
    EXPECT_EQ(got[i].slot_tokens_per_s, want.slot_tokens_per_s);
    EXPECT_EQ(got[i].padding_share, want.padding_share);
  }
}

// A metrics file written before the real/slot token columns existed (8 step fields): read,
// the new columns 0.
TEST(Metrics, AFileWithoutTheTokenColumnsReadsThemAsZero) {
  TempDir dir;
  const std::string path = dir / "old.h5";
  struct Old {
    int64_t step;
    double loss, lr, grad_norm;
    int64_t tokens;
    double step_time_s, tokens_per_s, mem_gb;
  } row{3, 1.5, 1e-4, 0.7, 900, 2.0, 450.0, 11.0};
  {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(Old));
    H5Tinsert(t, "step", offsetof(Old, step), H5T_NATIVE_INT64);
    H5Tinsert(t, "loss", offsetof(Old, loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "lr", offsetof(Old, lr), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "grad_norm", offsetof(Old, grad_norm), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "tokens", offsetof(Old, tokens), H5T_NATIVE_INT64);
    H5Tinsert(t, "step_time_s", offsetof(Old, step_time_s), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "tokens_per_s", offsetof(Old, tokens_per_s), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "mem_gb", offsetof(Old, mem_gb), H5T_NATIVE_DOUBLE);
    hsize_t one = 1, none = 0;
    hid_t s1 = H5Screate_simple(1, &one, nullptr), s0 = H5Screate_simple(1, &none, nullptr);
    hid_t d = H5Dcreate2(f, "steps", t, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &row), 0);
    H5Dclose(d);
    H5Dclose(H5Dcreate2(f, "evals", H5T_NATIVE_INT, s0, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    // Format 1: every attribute a text row of /attrs, integers as decimal text.
    struct AttrRow {
      char name[64];
      char value[256];
    } attrs[2] = {{"rows_skipped", "7"}, {"name", "v6-2024"}};
    hid_t str64 = H5Tcopy(H5T_C_S1), str256 = H5Tcopy(H5T_C_S1);
    H5Tset_size(str64, 64);
    H5Tset_size(str256, 256);
    H5Tset_cset(str64, H5T_CSET_UTF8);
    H5Tset_cset(str256, H5T_CSET_UTF8);
    hid_t at = H5Tcreate(H5T_COMPOUND, sizeof(AttrRow));
    H5Tinsert(at, "name", offsetof(AttrRow, name), str64);
    H5Tinsert(at, "value", offsetof(AttrRow, value), str256);
    hsize_t two = 2;
    hid_t s2 = H5Screate_simple(1, &two, nullptr);
    hid_t ad = H5Dcreate2(f, "attrs", at, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(ad, at, H5S_ALL, H5S_ALL, H5P_DEFAULT, attrs), 0);
    H5Dclose(ad);
    H5Sclose(s2);
    H5Tclose(at);
    H5Tclose(str64);
    H5Tclose(str256);
    H5Sclose(s1);
    H5Sclose(s0);
    H5Tclose(t);
    H5Fclose(f);
  }
  const auto m = read_metrics(path);
  ASSERT_EQ(m.steps.size(), 1u);
  EXPECT_EQ(m.steps[0].step, 3);
  EXPECT_EQ(m.steps[0].tokens, 900);
  EXPECT_EQ(m.steps[0].mem_gb, 11.0);
  EXPECT_EQ(m.steps[0].real_tokens, 0);
  EXPECT_EQ(m.steps[0].padding_share, 0.0);
  EXPECT_EQ(m.format_version, 1);
  EXPECT_TRUE(m.columns.empty());
  EXPECT_EQ(m.counters, (std::map<std::string, int64_t>{{"rows_skipped", 7}}));
  EXPECT_EQ(m.attrs, (std::map<std::string, std::string>{{"name", "v6-2024"}}));
}

TEST(Metrics, AppendsRowsAndAttrs) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsWriter w(path, false, 0);
    w.set_counter("rows_skipped", 3);
    w.set_attr("run", "v6 ✓");
    for (int64_t k = 1; k <= 300; ++k) w.append(step_row(k));  // more than one chunk
    w.append(eval_row(100));
    w.append(eval_row(200));
    w.set_counter("rows_skipped", 7);  // overwritten, not duplicated
    w.set_counter("big", int64_t(1) << 53 | 1);  // exact beyond a double
  }
  const auto m = read_metrics(path);
  std::vector<int64_t> want;
  for (int64_t k = 1; k <= 300; ++k) want.push_back(k);
  expect_steps(m.steps, want);
  ASSERT_EQ(m.evals.size(), 2u);
  EXPECT_EQ(m.evals[1].step, 200);
  EXPECT_EQ(m.evals[1].eval_loss, 1.0 / 200);
  EXPECT_EQ(m.evals[1].kl, 2.0);
  EXPECT_EQ(m.evals[1].eval_tokens, 5200);
  EXPECT_EQ(m.counters, (std::map<std::string, int64_t>{{"big", (int64_t(1) << 53) | 1}, {"rows_skipped", 7}}));
  EXPECT_EQ(m.attrs, (std::map<std::string, std::string>{{"run", "v6 ✓"}}));
  EXPECT_FALSE(exists(path + ".tmp"));
}

// /time_split (the time split of the last r1dist train process) goes into a closed file,
// keeping everything else; written again, it replaces the old one; a resume starts without
// it (it covers one process); a file without it reads as an empty split.
TEST(Metrics, TheTimeSplitIsAddedToAClosedFileAndReadBack) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsWriter w(path, false, 0, "[model]\n");
    w.set_counter("rows_skipped", 3);
    for (int64_t k = 1; k <= 4; ++k) w.append(step_row(k));
    w.append(eval_row(4));
  }
  EXPECT_TRUE(read_metrics(path).time_split.empty());
  std::vector<TimePart> split = {{"load", 1.5, 0.25}, {"train_steps", 3, 0.5}, {"other", 1.5, 0.25}, {"total", 6, 1}};
  write_time_split(path, split);
  split[0].seconds = 2;  // a second write replaces the table
  write_time_split(path, split);
  const auto m = read_metrics(path);
  ASSERT_EQ(m.time_split.size(), split.size());
  for (size_t i = 0; i < split.size(); ++i) {
    EXPECT_EQ(m.time_split[i].name, split[i].name);
    EXPECT_EQ(m.time_split[i].seconds, split[i].seconds);
    EXPECT_EQ(m.time_split[i].share, split[i].share);
  }
  expect_steps(m.steps, {1, 2, 3, 4});
  EXPECT_EQ(m.evals.size(), 1u);
  EXPECT_EQ(m.counters.at("rows_skipped"), 3);
  EXPECT_EQ(m.config_toml, "[model]\n");
  { MetricsWriter resumed(path, true, 2); }
  const auto r = read_metrics(path);
  expect_steps(r.steps, {1, 2});
  EXPECT_TRUE(r.time_split.empty());
  EXPECT_TRUE(ThrowsWith([&] { write_time_split(path, {{std::string(40, 'x'), 1, 1}}); }, {path, "does not fit"}));
}

// Root attributes, the config as checkpoints store it (a scalar string dataset /config),
// counters stored as integers, and a unit and description for every column.
TEST(Metrics, TheFileDescribesItself) {
  TempDir dir;
  const std::string path = dir / "metrics.h5", toml = "[model]\npath = \"models/tiny\"\n";
  {
    MetricsWriter w(path, false, 0, toml);
    w.set_counter("world_size", 2);
    w.append(step_row(1));
  }
  const auto m = read_metrics(path);
  EXPECT_EQ(m.format_version, kMetricsFormatVersion);
  EXPECT_EQ(m.r1dist_version, R1DIST_VERSION);
  EXPECT_EQ(m.created.size(), 20u) << m.created;  // 2025-01-31T12:00:00Z
  EXPECT_EQ(m.created.back(), 'Z');
  EXPECT_EQ(m.config_toml, toml);
  ASSERT_EQ(m.columns.size(), metrics_columns().size());
  for (size_t i = 0; i < m.columns.size(); ++i) {
    EXPECT_EQ(m.columns[i].table + "." + m.columns[i].name,
              metrics_columns()[i].table + "." + metrics_columns()[i].name);
    EXPECT_EQ(m.columns[i].unit, metrics_columns()[i].unit);
    EXPECT_FALSE(m.columns[i].description.empty());
  }
  // Every field of both tables is in the column table, in the file's field order.
  EXPECT_EQ(m.columns[0].name, "step");
  EXPECT_EQ(m.columns[12].name, "padding_share");
  EXPECT_EQ(m.columns[6].unit, "tokens/s");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t d = H5Dopen2(f, "counters", H5P_DEFAULT);
  hid_t t = H5Dget_type(d);
  const int i = H5Tget_member_index(t, "value");
  ASSERT_GE(i, 0);
  EXPECT_EQ(H5Tget_member_class(t, unsigned(i)), H5T_INTEGER);
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
}

TEST(Metrics, ANewerFormatIsRefusedNamingItsVersion) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  { MetricsWriter w(path, false, 0); }
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  const int64_t v = kMetricsFormatVersion + 1;
  ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
  H5Aclose(a);
  H5Fclose(f);
  EXPECT_TRUE(ThrowsWith([&] { read_metrics(path); },
                         {"metrics.h5", "format_version' is " + std::to_string(v), "HINT"}));
}

TEST(Metrics, AttrThatDoesNotFitIsRejected) {
  TempDir dir;
  MetricsWriter w(dir / "metrics.h5", false, 0);
  EXPECT_TRUE(ThrowsWith([&] { w.set_counter(std::string(64, 'n'), 1); }, {"metrics.h5", "does not fit"}));
  EXPECT_TRUE(ThrowsWith([&] { w.set_attr("x", std::string(256, 'v')); }, {"does not fit"}));
}

TEST(Metrics, ResumeDropsRowsAfterTheCheckpoint) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  {
    MetricsWriter w(path, false, 0);
    w.set_counter("rows_skipped", 5);
    for (int64_t k = 1; k <= 30; ++k) w.append(step_row(k));
    w.append(eval_row(10));
    w.append(eval_row(20));
    w.append(eval_row(30));
  }
  {
    MetricsWriter w(path, true, 20);  // resumed from the step-20 checkpoint
    for (int64_t k = 21; k <= 25; ++k) w.append(step_row(k));
    w.set_counter("resumed_from", 20);
  }
  const auto m = read_metrics(path);
  std::vector<int64_t> want;
  for (int64_t k = 1; k <= 25; ++k) want.push_back(k);
  expect_steps(m.steps, want);
  ASSERT_EQ(m.evals.size(), 2u);
  EXPECT_EQ(m.evals.back().step, 20);
  EXPECT_EQ(m.counters.at("rows_skipped"), 5);
  EXPECT_EQ(m.counters.at("resumed_from"), 20);
  // resume = false starts over.
  { MetricsWriter w(path, false, 0); }
  EXPECT_TRUE(read_metrics(path).steps.empty());
  // Resuming without a file creates one.
  { MetricsWriter w(dir / "fresh.h5", true, 9); }
  EXPECT_TRUE(read_metrics(dir / "fresh.h5").steps.empty());
}

TEST(Metrics, KilledWriterKeepsEveryCompletedRowAndResumes) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child does all the HDF5 work on this file and dies without closing it.
    try {
      MetricsWriter w(path, false, 0);
      w.set_counter("rows_skipped", 2);
      for (int64_t k = 1; k <= 50; ++k) w.append(step_row(k));
      w.append(eval_row(50));
      ::raise(SIGKILL);
    } catch (...) {
    }
    ::_exit(3);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  std::vector<int64_t> want;
  for (int64_t k = 1; k <= 50; ++k) want.push_back(k);
  const auto m = read_metrics(path);
  expect_steps(m.steps, want);
  ASSERT_EQ(m.evals.size(), 1u);
  EXPECT_EQ(m.counters.at("rows_skipped"), 2);
  // A killed SWMR writer leaves "open for writing" marks in the file; resuming still works.
  {
    MetricsWriter w(path, true, 40);
    w.append(step_row(41));
  }
  want.resize(41);
  expect_steps(read_metrics(path).steps, want);
  EXPECT_EQ(read_metrics(path).evals.size(), 0u);
}

TEST(Metrics, H5dumpReadsAClosedFile) {
  if (!on_path("h5dump")) GTEST_SKIP() << "h5dump not installed";
  TempDir dir;
  {
    MetricsWriter w(dir / "metrics.h5", false, 0);
    w.append(step_row(1));
    w.set_counter("rows_skipped", 1);
  }
  const auto r = test::run_command("h5dump " + (dir / "metrics.h5"));
  const std::string& out = r.out;
  EXPECT_EQ(r.code, 0) << out;
  EXPECT_NE(out.find("DATASET \"steps\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"tokens_per_s\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"rows_skipped\""), std::string::npos) << out;
  EXPECT_NE(out.find("ATTRIBUTE \"units\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"r1dist-metrics\""), std::string::npos) << out;
}

}  // namespace
