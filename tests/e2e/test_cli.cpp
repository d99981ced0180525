// The r1dist binary end to end: exit codes (0 ok, 2 usage/config, 1 runtime), messages,
// `score` against the transformers reference, `tokenize`, `metrics` reading a file that
// another process is writing, and MPI start-up only where a command needs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "r1dist/formats/metrics.h"
#include "r1dist/log/time_split.h"
#include "support/time_split_json.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/formats/safetensors.h"
#include "support/process.h"
#include "support/temp.h"
#include "support/tokenizer.h"
#include "trainer_runs.h"

namespace r1dist::test {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Cli, HelpAndUsageErrors) {
  auto r = run_r1dist("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("init-model"));
  EXPECT_THAT(r.out, HasSubstr("score"));
  EXPECT_EQ(run_r1dist("").code, 2);
  r = run_r1dist("frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'frobnicate'"));
  r = run_r1dist("score --model x");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--ids is required"));
  r = run_r1dist("score --model x --ids y --bogus 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(run_r1dist("score --help").code, 0);
  r = run_r1dist("tokenize --tokenizer x --text a --threads many");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("threads"));
}

// `r1dist train --cfg FILE` is the spelling the help documents; `r1dist --cfg FILE` still works.
TEST(Cli, TrainIsTheDocumentedSpellingOfARun) {
  auto r = run_r1dist("--help");
  ASSERT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("r1dist train --cfg FILE"));
  EXPECT_THAT(r.out, Not(HasSubstr("r1dist --cfg")));
  r = run_r1dist("train --help");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("r1dist train --cfg FILE [OPTION...]"));
  EXPECT_THAT(r.out, HasSubstr("--resume"));
  for (const char* spelling : {"train --cfg", "--cfg"}) {
    r = run_r1dist(std::string(spelling) + " /nonexistent/none.toml");
    EXPECT_EQ(r.code, 2) << spelling;
    EXPECT_THAT(r.err, HasSubstr("/nonexistent/none.toml")) << spelling;
  }
  r = run_r1dist("train");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--cfg FILE is required"));
}

// Bare arguments are named in each command's usage line and in the error when one is missing;
// no error names an option that --help does not show.
TEST(Cli, UsageAndErrorsNameThePositionalArguments) {
  const struct {
    const char* args;
    const char* usage;    // in `COMMAND --help`
    const char* missing;  // in the error without arguments
    const char* hidden;   // the option behind it, never named
  } cases[] = {
      {"metrics", "r1dist metrics [OPTION...] RUN_DIR|METRICS_H5", "missing RUN_DIR|METRICS_H5", "--path"},
      {"checkpoint", "r1dist checkpoint [OPTION...] verify PATH...", "missing verify PATH...", "--action"},
      {"checkpoint verify", "r1dist checkpoint [OPTION...] verify PATH...", "missing PATH...", "--paths"},
      {"checkpoint-diff", "r1dist checkpoint-diff [OPTION...] A B", "missing A B", "--a "},
      {"bench", "r1dist bench [OPTION...] KIND", "missing KIND", "--kind"},
      {"sweep status", "r1dist sweep status [OPTION...] DIR", "missing DIR", "--dir"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    auto r = run_r1dist(std::string(c.args) + " --help");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(c.usage));
    EXPECT_THAT(r.out, Not(HasSubstr("positional parameters")));
    r = run_r1dist(c.args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.missing));
    EXPECT_THAT(r.err, Not(HasSubstr(c.hidden)));
  }
  // checkpoint-diff takes its two checkpoints as bare arguments (or -a/-b).
  auto r = run_r1dist("checkpoint-diff /nonexistent/a.h5");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing B"));
}

// The top-level help and `bench --help` list the bench kinds from the bench command's own table.
TEST(Cli, HelpListsEveryBenchKindWithWhatItMeasures) {
  const auto top = run_r1dist("--help");
  const auto bench = run_r1dist("bench --help");
  ASSERT_EQ(bench.code, 0) << bench.err;
  for (const char* kind : {"nf4", "data", "checkpoint", "generate", "loss", "train", "allreduce"}) {
    EXPECT_THAT(top.out, HasSubstr(kind));
    // One line per kind: its name, then what it measures.
    EXPECT_THAT(bench.out, ::testing::ContainsRegex(std::string("\n  ") + kind + " +[a-z]")) << kind;
  }
  const auto bad = run_r1dist("bench frobnicate");
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("nf4, data, checkpoint, generate, loss, train"));
}

TEST(Cli, ConfigErrorsExitTwoWithFileLineAndSuggestion) {
  TempDir tmp;
  write_text(tmp / "bad.toml", "[model]\npath = \"m\"\n\n[train]\nlearning_rate = 1e-4\n");
  auto r = run_r1dist("--cfg " + (tmp / "bad.toml") + " --dry-run");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.toml:5"));
  EXPECT_THAT(r.err, HasSubstr("did you mean 'train.lr'"));
  r = run_r1dist("--cfg " + (tmp / "none.toml"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("none.toml"));
  r = run_r1dist("--cfg " + (tmp / "bad.toml") + " --set train.lrr=1");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--set train.lrr=1"));
}

// A dry run loads what a run loads: the tokenizer, the data (counts and a length
// histogram), the model (quantised, with LoRA), and checks the memory estimate.
TEST(Cli, DryRunLoadsTokenizerDataAndModelAndWritesTheRunLog) {
  TempDir tmp;
  // The tiny preset (the real vocabulary) in fp32 shards of at most 20 MiB, with the R1 tokenizer.
  auto r = run_r1dist("init-model --preset tiny --dtype fp32 --seed 1 --max-shard-mb 20 --out " + (tmp / "m") +
                      " --tokenizer " + r1_tokenizer_dir());
  ASSERT_EQ(r.code, 0) << r.err;
  write_text(tmp / "ok.toml", "[model]\npath = \"" + (tmp / "m") + "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n" +
                                  "[data]\npath = \"" + source_dir() + "/data/sample_zh.jsonl\"\nmax_seq_len = 256\n" +
                                  "[output]\ndir = \"" + (tmp / "run") + "\"\n");
  r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --export-rows " + (tmp / "rows.jsonl"));
  EXPECT_EQ(r.code, 0) << r.err;
  const auto log = read_text(tmp / "run/run.log");
  EXPECT_THAT(log, HasSubstr("2 layers, hidden 64"));
  EXPECT_THAT(log, HasSubstr("memory estimate per rank: "));
  EXPECT_THAT(log, HasSubstr("151665 tokens"));
  EXPECT_THAT(log, HasSubstr("64 rows in the file, 0 skipped, 64 train / 0 eval rows"));
  EXPECT_THAT(log, HasSubstr("train lengths (tokens) <="));
  EXPECT_THAT(log, HasSubstr("dry run"));
  // tiny: 2 layers, hidden 64, kv 32, intermediate 128; r=16 on all seven projections.
  EXPECT_THAT(log, HasSubstr("(fp32, base nf4), 37376 LoRA parameters"));
  // The first step's layout, padded and packed (defaults: 8 rows, max_seq_len 256 here).
  EXPECT_THAT(log, HasSubstr("step 1: 8 rows, "));
  EXPECT_THAT(log, HasSubstr("% padding); packed "));
  // The exported rows: one JSON line per training row, ids and labels of equal length.
  const auto rows = read_jsonl(tmp / "rows.jsonl");
  ASSERT_EQ(rows.size(), 64u);
  EXPECT_EQ(rows[0]["ids"].size(), rows[0]["labels"].size());
  EXPECT_LE(rows[0]["ids"].size(), 256u);
  EXPECT_EQ(run_r1dist("--cfg " + (tmp / "ok.toml") + " --export-rows x.jsonl").code, 2) << "only with --dry-run";
  // A tokenizer that does not belong to the model: qwen2_b has 256 ids, the R1 tokenizer 151665.
  copy_tree(fixture("qwen2_b"), tmp / "small");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(r1_tokenizer_dir() + "/" + f, (tmp / "small") + "/" + f);
  r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set model.path=" + (tmp / "small"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr((tmp / "small") + "/config.json: vocab_size is 256, but the tokenized data holds id "));
  // A truncated tokenizer.json fails the dry run (exit 2: a bad input file), naming the file.
  TempDir cut;
  copy_tree(tmp / "m", cut / "m");
  write_text(cut / "m/tokenizer.json", read_text(tmp / "m/tokenizer.json").substr(0, 100000));
  r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set model.path=" + (cut / "m"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(cut / "m/tokenizer.json"));
  // A shard gone (an incomplete download: the model directory is the user's input) exits 2
  // and names the shard.
  TempDir broken;
  copy_tree(tmp / "m", broken / "m");
  std::string shard;
  for (const auto& f : std::filesystem::directory_iterator(broken / "m"))
    if (f.path().filename().string().rfind("model-00002-of-", 0) == 0) shard = f.path().filename().string();
  ASSERT_FALSE(shard.empty()) << "the tiny fp32 model is written in several shards";
  std::filesystem::remove(broken / ("m/" + shard));
  r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set model.path=" + (broken / "m"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(shard));
}

// bench train: real steps on a random tiny model (no files), one JSON line whose time split
// adds up to the step, at the loss of a uniform guess over the vocabulary (ln 151936 = 11.93).
TEST(Cli, BenchTrainPrintsTokensPerSecondAndTheSplitOfAStep) {
  const auto r = run_r1dist("bench train --preset tiny --seq 64 --micro-batch 2 --grad-accum 2 --steps 2 "
                            "--warmup 1 --dtype fp32 --device cpu");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["bench"], "train");
  EXPECT_EQ(j["steps"], 2);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_NEAR(j["loss"].get<double>(), 11.93, 0.2);
  const double step = j["step_s"].get<double>();
  double parts = 0;
  for (const char* k : {"forward", "lm_head_loss", "backward", "optimizer"}) {
    EXPECT_GT(j["split_s"][k].get<double>(), 0.0) << k;
    parts += j["split_s"][k].get<double>();
  }
  EXPECT_NEAR(parts, step, 0.05 * step) << r.out;
  EXPECT_EQ(run_r1dist("bench train --preset tiny --checkpointing some --device cpu").code, 2);
  // --memory-budget: the trainer's rule picks the kept layers (the tiny preset's 2 fit in 5 GB).
  const auto b = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                            "--memory-budget 5");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(b.out)["keep_layers"], 2);
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --memory-budget 0.0001").code, 2);
  // A shape past the device's memory is refused before the model is built, as train refuses it.
  const auto big = run_r1dist("bench train --preset tiny --device cpu --seq 1000000000");
  EXPECT_EQ(big.code, 2) << big.err;
  EXPECT_THAT(big.err, HasSubstr("bench train: this config needs an estimated "));
  EXPECT_THAT(big.err, HasSubstr("(the flags --micro-batch, --seq, --checkpointing, --memory-budget)"));
  EXPECT_THAT(big.err, ::testing::Not(HasSubstr("bench train: tiny (2 layers)"))) << "the model was built";
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --memory-budget 5 --keep-layers 1").code, 2);
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --memory-budget 5 --recompute-mlp-layers 1").code, 2);
  // --recompute-mlp-layers: the layer before the kept ones recomputes its MLP only.
  const auto m = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                            "--checkpointing layer --keep-layers 1 --recompute-mlp-layers 1");
  ASSERT_EQ(m.code, 0) << m.err;
  const auto mj = nlohmann::json::parse(m.out);
  EXPECT_EQ(mj["keep_layers"], 1);
  EXPECT_EQ(mj["recompute_mlp_layers"], 1);
  EXPECT_GT(mj["estimate_gb"].get<double>(), 0.0);
  EXPECT_THAT(m.err, HasSubstr("0 recompute the whole layer, 1 only the MLP, 1 keep every activation"));
  // --offload-layers (the fused path; the CPU runs it with --fused on): the layer's activations
  // go to host memory and come back; the line says how many bytes each forward moved.
  const auto o = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                            "--fused on --checkpointing none --offload-layers 1");
  ASSERT_EQ(o.code, 0) << o.err;
  const auto oj = nlohmann::json::parse(o.out);
  EXPECT_EQ(oj["offload_layers"], 1);
  EXPECT_GT(oj["offload_gb_per_forward"].get<double>(), 0.0);
  EXPECT_THAT(o.err, HasSubstr("1 of the layers not recomputed keep activations in host memory"));
  EXPECT_FALSE(oj["offload_recomputed_inputs"].get<bool>());
  EXPECT_FALSE(oj["offload_attention"].get<bool>());
  // --offload-attention: the same layer moves q, k, v and the attention's output too.
  const auto at = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                             "--fused on --checkpointing none --offload-layers 1 --offload-attention");
  ASSERT_EQ(at.code, 0) << at.err;
  const auto aj = nlohmann::json::parse(at.out);
  EXPECT_TRUE(aj["offload_attention"].get<bool>());
  EXPECT_GT(aj["offload_gb_per_forward"].get<double>(), oj["offload_gb_per_forward"].get<double>());
  // --offload-recomputed-inputs: the layers recomputed whole keep their input there.
  const auto in = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                             "--fused on --offload-recomputed-inputs");
  ASSERT_EQ(in.code, 0) << in.err;
  const auto ij = nlohmann::json::parse(in.out);
  EXPECT_TRUE(ij["offload_recomputed_inputs"].get<bool>());
  EXPECT_GT(ij["offload_gb_per_forward"].get<double>(), 0.0);
  EXPECT_THAT(in.err, HasSubstr("recompute the whole layer (their inputs in host memory)"));
  EXPECT_EQ(ij["offload"], "manual");
  // --offload auto plans within a budget: without one it is refused; on the CPU it moves nothing.
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --offload auto").code, 2);
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --offload sometimes --memory-budget 1").code, 2);
  const auto au = run_r1dist("bench train --preset tiny --seq 32 --steps 1 --warmup 0 --dtype fp32 --device cpu "
                             "--offload auto --memory-budget 1");
  ASSERT_EQ(au.code, 0) << au.err;
  EXPECT_EQ(nlohmann::json::parse(au.out)["offload"], "auto");
  EXPECT_EQ(run_r1dist("bench train --preset tiny --device cpu --offload-layers -1").code, 2);
  EXPECT_EQ(run_r1dist("bench train --preset tiny --seq 1 --device cpu").code, 2);
}

// Memory is checked before it is spent: absurd batch settings are refused at once with the
// estimate (or the row arithmetic), exit 2, before any model is loaded.
TEST(Cli, BatchesThatCannotFitAreRefusedBeforeLoading) {
  TempDir tmp;
  copy_tree(fixture("qwen2_b"), tmp / "m");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(r1_tokenizer_dir() + "/" + f, (tmp / "m") + "/" + f);
  write_text(tmp / "ok.toml", "[model]\npath = \"" + (tmp / "m") + "\"\ndtype = \"fp32\"\ndevice = \"cpu\"\n" +
                                  "[data]\npath = \"" + source_dir() + "/data/sample_zh.jsonl\"\n" +
                                  "[output]\ndir = \"" + (tmp / "run") + "\"\n");
  for (const char* mode : {" --dry-run", ""}) {
    SCOPED_TRACE(mode);
    auto r = run_r1dist("--cfg " + (tmp / "ok.toml") + mode + " --set train.micro_batch=1000000000");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("this config needs an estimated "));
    EXPECT_THAT(r.err, HasSubstr("train.micro_batch = 1000000000"));
    EXPECT_THAT(r.err, HasSubstr("HINT: lower train.micro_batch"));
    EXPECT_THAT(r.err, ::testing::Not(HasSubstr("bad_alloc")));
    r = run_r1dist("--cfg " + (tmp / "ok.toml") + mode + " --set train.grad_accum=1000000000");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("= 2000000000 rows per step, but"));
    r = run_r1dist("--cfg " + (tmp / "ok.toml") + mode + " --set train.memory_budget_gb=0.0001");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("train.memory_budget_gb = 0.0001 is below what this config needs"));
  }
  // A budget that fits every layer of qwen2_b (3): the dry run states its plan, before it
  // goes on to refuse the data (the R1 tokenizer's ids exceed qwen2_b's 256-token vocabulary).
  const auto r = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set train.memory_budget_gb=100");
  EXPECT_THAT(r.err, HasSubstr("train.memory_budget_gb = 100 GB: the backward's plan for the 3 layers: 0 recompute "
                                    "the whole layer, 0 only the MLP, 3 keep every activation"));
  // train.offload_layers applies to the GPU's fused layers: the CPU's run says it moves nothing.
  const auto o = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set train.offload_layers=2");
  EXPECT_THAT(o.err, HasSubstr("train.offload_layers = 2 moves nothing here"));
  const auto i = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set train.offload_recomputed_inputs=true");
  EXPECT_THAT(i.err, HasSubstr("train.offload_recomputed_inputs moves nothing here"));
  const auto a = run_r1dist("--cfg " + (tmp / "ok.toml") + " --dry-run --set train.offload=auto");
  EXPECT_THAT(a.err, HasSubstr("train.offload = auto moves nothing here"));
}

// --json answers a failure too: the exit code and the message, as JSON on stdout.
TEST(Cli, TrainJsonReportsAFailureWithItsExitCode) {
  TempDir tmp;
  const auto cfg = run_config(tmp / "run", 1, 1, 2);
  auto r = run_r1dist("--cfg " + cfg + " --json --set data.path=" + (tmp / "none.jsonl"));
  EXPECT_EQ(r.code, 2) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["exit_code"], 2);
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr(tmp / "none.jsonl" + ": cannot read the data file"));
  r = run_r1dist("--cfg " + cfg + " --json --set output.dir=/proc/none");
  EXPECT_EQ(r.code, 1) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("/proc/none"));
}

// Rows cut before their response (loss on the responses only, a short max_seq_len) teach
// nothing: dropped and counted; refused before training when no row is left.
TEST(Cli, RowsWithoutALossTokenAreDroppedAndCounted) {
  TempDir tmp;
  const auto cfg = run_config(tmp / "run", 1, 1, 2);
  auto r = run_r1dist("--cfg " + cfg + " --dry-run --set data.train_on_prompt=false --set data.max_seq_len=64");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(sample_data() + ": none of the 60 selected rows is left: 0 longer than "
                               "data.max_seq_len = 64 dropped (data.overlong), 60 without a loss token after truncation"));
  EXPECT_THAT(r.err, HasSubstr("HINT: raise data.max_seq_len, or set data.train_on_prompt = true"));
  // Some rows left: the others dropped, counted in the log and in run.json.
  int64_t shortest = INT64_MAX, longest = 0;
  {
    const auto rows = tmp / "rows.jsonl";
    r = run_r1dist("--cfg " + cfg + " --dry-run --set data.train_on_prompt=false --set data.max_seq_len=4096 "
                   "--export-rows " + rows);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("no loss token")));
    std::ifstream in(rows);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      int64_t prompt = 0;
      for (const auto& l : j["labels"]) {
        if (l.get<int64_t>() != -100) break;
        ++prompt;
      }
      shortest = std::min(shortest, prompt);
      longest = std::max(longest, prompt);
    }
  }
  ASSERT_LT(shortest, longest) << "the sample's prompts differ in length";
  const int64_t cut = (shortest + longest) / 2;  // rows whose prompt is longer lose every label
  r = run_r1dist("--cfg " + cfg + " --set data.train_on_prompt=false --set data.max_seq_len=" + std::to_string(cut) +
                 " --set train.steps=1 --set eval.suite=false --set data.eval_rows=0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("rows dropped: no loss token left after truncation to data.max_seq_len = " +
                               std::to_string(cut)));
  const auto run = nlohmann::json::parse(read_text(tmp / "run/run.json"));
  EXPECT_GT(run["rows_without_loss"].get<int64_t>(), 0);
  EXPECT_EQ(run["rows_without_loss"].get<int64_t>() + int64_t(run["train_row_ids"].size()),
            run["rows_in_file"].get<int64_t>());
}

// The values of a reference tensor, as doubles (I64 ids or an F32 scalar).
std::vector<double> reference_values(const st::File& f, const std::string& name) {
  const auto& info = f.at(name);
  std::vector<double> out(size_t(info.numel()));
  const uint8_t* p = f.data(info);
  for (size_t i = 0; i < out.size(); ++i) {
    if (info.dtype == st::DType::I64) {
      int64_t v;
      std::memcpy(&v, p + 8 * i, 8);
      out[i] = double(v);
    } else {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = v;
    }
  }
  return out;
}

TEST(Cli, ScoreMatchesTheTransformersLoss) {
  const auto dir = fixture("qwen2_a");
  auto ref = st::File::open(dir + "/reference.safetensors");
  const auto& ids_info = ref.at("input_ids");
  ASSERT_EQ(ids_info.dtype, st::DType::I64);
  const int64_t rows = ids_info.shape[0], len = ids_info.shape[1];
  const auto ids = reference_values(ref, "input_ids");
  nlohmann::json seqs = nlohmann::json::array();
  for (int64_t b = 0; b < rows; ++b)
    seqs.push_back(std::vector<int64_t>(ids.begin() + b * len, ids.begin() + (b + 1) * len));
  TempDir tmp;
  write_text(tmp / "ids.json", seqs.dump());
  auto r = run_r1dist("score --model " + dir + " --ids " + (tmp / "ids.json") + " --device cpu --dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  auto out = nlohmann::json::parse(r.out);
  ASSERT_EQ(out["sequences"].size(), 2u);
  double mean = 0;
  for (auto& s : out["sequences"]) {
    EXPECT_EQ(s["logprobs"].size(), size_t(len - 1));
    double sum = 0;
    for (auto& lp : s["logprobs"]) sum += lp.get<double>();
    EXPECT_NEAR(s["mean_nll"].get<double>(), -sum / s["logprobs"].size(), 1e-9);
    mean += s["mean_nll"].get<double>() / 2;
  }
  // Equal lengths: the mean of the per-row means is HF's loss over the batch.
  EXPECT_NEAR(mean, reference_values(ref, "loss").at(0), 1e-5);
}

TEST(Cli, ScoreRejectsBadIdsWithTheirPosition) {
  TempDir tmp;
  write_text(tmp / "ids.json", "[[1, 2, 3], [4, 99999]]");
  auto r = run_r1dist("score --model " + fixture("qwen2_a") + " --ids " + (tmp / "ids.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("sequence 1, position 1: id 99999 is outside the model's vocabulary [0, 320)"));
  write_text(tmp / "short.json", "[[5]]");
  r = run_r1dist("score --model " + fixture("qwen2_a") + " --ids " + (tmp / "short.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("at least 2"));
  r = run_r1dist("score --model " + (tmp / "nomodel") + " --ids " + (tmp / "ids.json"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("config.json"));
}

// bench train and bench allreduce run on every rank and all-reduce the LoRA gradient buffer:
// rank 0 alone prints, with the job's figures. The buffer's bytes are counted here from the
// tiny preset's shape: r x (in + out) for each of the seven projections of every layer, plus
// the step's 4 spare fp32 slots. Numbers are not asserted beyond their presence and sense.
TEST(Cli, BenchTrainAndAllreduceRunOnEveryRankWithTheirScalingFields) {
  const auto c = qwen2_preset("tiny");
  const int64_t r = 16, h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), i = c.intermediate_size;
  const int64_t per_layer = r * ((h + q) + 2 * (h + kv) + (q + h) + 3 * (h + i));
  const int64_t bytes = (c.num_hidden_layers * per_layer + 4) * 4;
  TempDir tmp;
  const std::string base = tmp.path + "/train_1.jsonl";
  const std::string shape = "bench train --preset tiny --seq 32 --steps 2 --warmup 1 --dtype fp32 --device cpu";
  auto one = run_r1dist(shape);
  ASSERT_EQ(one.code, 0) << one.err;
  {
    std::ofstream(base) << one.out;
  }
  const auto j1 = nlohmann::json::parse(one.out);
  EXPECT_EQ(j1["ranks"], 1);
  EXPECT_EQ(j1["allreduce_bytes"], bytes);
  EXPECT_THAT(one.err, HasSubstr("projection ("));
  const auto two = run_r1dist(shape + " --baseline " + base, Launch{2});
  ASSERT_EQ(two.code, 0) << two.err;
  const auto j = nlohmann::json::parse(two.out);  // one line: rank 0 alone prints
  EXPECT_EQ(j["ranks"], 2);
  EXPECT_EQ(j["backend"], "mpi");
  EXPECT_EQ(j["allreduce_bytes"], bytes);
  EXPECT_EQ(j["tokens_per_s_per_rank"].size(), 2u);
  EXPECT_NEAR(j["tokens_per_s_total"].get<double>(), 2 * j["tokens_per_s"].get<double>(), 1e-6 * j["tokens_per_s_total"].get<double>());
  EXPECT_GT(j["allreduce_s"].get<double>(), 0.0);
  EXPECT_GT(j["allreduce_share"].get<double>(), 0.0);
  EXPECT_LT(j["allreduce_share"].get<double>(), 1.0);
  EXPECT_NEAR(j["efficiency"].get<double>(), j["tokens_per_s"].get<double>() / j1["tokens_per_s"].get<double>(), 1e-9);
  EXPECT_EQ(j["projection"]["points"].size(), 4u);
  EXPECT_EQ(j["projection"]["points"][3]["gpus"], 256);
  EXPECT_EQ(run_r1dist(shape + " --baseline " + tmp.path + "/none.jsonl").code, 2);

  const auto ar = run_r1dist("bench allreduce --preset tiny --reps 3 --device cpu", Launch{2});
  ASSERT_EQ(ar.code, 0) << ar.err;
  const auto a = nlohmann::json::parse(ar.out);
  EXPECT_EQ(a["ranks"], 2);
  EXPECT_EQ(a["bytes"], bytes);
  EXPECT_GT(a["busbw_gbps"].get<double>(), 0.0);
  EXPECT_NEAR(a["busbw_gbps"].get<double>(), a["algbw_gbps"].get<double>(), 1e-9);  // 2 (N - 1) / N = 1 at N = 2
  const auto a1 = nlohmann::json::parse(run_r1dist("bench allreduce --bytes 4096 --reps 2 --device cpu").out);
  EXPECT_EQ(a1["bytes"], 4096);
  EXPECT_TRUE(a1["busbw_gbps"].is_null());
  EXPECT_THAT(a1["busbw_note"].get<std::string>(), HasSubstr("undefined at 1 rank"));
}

// Commands that never talk to other ranks start no MPI: under mpirun each rank is a
// singleton that knows its rank from the launcher, and only rank 0 prints.
TEST(Cli, CommandsWithoutCollectivesPrintOnceUnderMpirun) {
  auto r = run_r1dist("--version", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "r1dist " R1DIST_VERSION "\n");
  r = run_r1dist("tokenize --tokenizer " + r1_tokenizer_dir() + " --text 'Hello world'", Launch{2});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "9707 1879\n");
}

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST(TokenizerCli, EncodeDecodeJsonl) {
  const std::string tk = "tokenize --tokenizer " + r1_tokenizer_dir() + " ";
  auto r = run_r1dist(tk + "--text 'Hello world' --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[9707,1879]\n");
  r = run_r1dist(tk + "--text 'Hello world' --add-special");
  EXPECT_EQ(r.out, "151646 9707 1879\n");
  r = run_r1dist(tk + "--decode --text '[151646,9707,1879]'");
  EXPECT_EQ(r.out, "<｜begin▁of▁sentence｜>Hello world");
  r = run_r1dist(tk + "--decode --skip-special --json --text '151646 9707 1879'");
  EXPECT_EQ(r.out, "\"Hello world\"\n");

  TempDir tmp;
  const std::string bytes = "caf\xE9 \xE4\xBD\xA0\r\n<think>\n";  // invalid UTF-8, CRLF, an added token
  write_text(tmp / "in.txt", bytes);
  r = run_r1dist(tk + "--file " + (tmp / "in.txt") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_str(r1_tokenizer().encode(bytes)) + "\n");

  write_text(tmp / "in.jsonl", "\"Hello world\"\n\"头晕目眩\"\n\"\"\n");
  r = run_r1dist(tk + "--jsonl " + (tmp / "in.jsonl") + " --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[9707,1879]\n" + ids_str(r1_tokenizer().encode("头晕目眩")) + "\n[]\n");
  write_text(tmp / "ids.jsonl", r.out);
  r = run_r1dist(tk + "--jsonl " + (tmp / "ids.jsonl") + " --decode");
  EXPECT_EQ(r.out, "\"Hello world\"\n\"头晕目眩\"\n\"\"\n");

  EXPECT_EQ(run_r1dist("tokenize --text hi").code, 2);
  EXPECT_EQ(run_r1dist(tk + "--text a --file b").code, 2);
  write_text(tmp / "bad.jsonl", "not json\n");
  r = run_r1dist(tk + "--jsonl " + (tmp / "bad.jsonl"));
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("line 1"));
  r = run_r1dist("tokenize --tokenizer " + sh_quote(tmp / "missing") + " --text hi");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  r = run_r1dist(tk + "--decode --text '[999999]'");
  EXPECT_EQ(r.code, 1);
}

TEST(Metrics, AnotherProcessReadsWhileTheRunWrites) {
  TempDir dir;
  const std::string path = dir / "metrics.h5";
  MetricsWriter w(path, false, 0, "[model]\npath = \"m\"\n");
  w.set_counter("rows_skipped", 4);
  w.set_attr("name", "tiny");
  auto step_row = [](int64_t k) {
    StepRecord r;
    r.step = k;
    r.loss = 1.0 / double(k);
    return r;
  };
  for (int64_t k = 1; k <= 7; ++k) w.append(step_row(k));
  w.append(EvalRecord{5, 0.5, 0.01, 100});
  auto count_rows = [&](const std::string& table) {
    const auto r = run_r1dist("metrics " + path + " --table " + table);
    EXPECT_EQ(r.code, 0) << r.err;
    std::istringstream in(r.out);
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
  };
  auto lines = count_rows("steps");
  ASSERT_EQ(lines.size(), 8u);  // header + 7
  EXPECT_EQ(lines[0],
            "step\tloss\tlr\tgrad_norm\ttokens\tstep_time_s\ttokens_per_s\tmem_gb\treal_tokens\tslot_tokens\t"
            "real_tokens_per_s\tslot_tokens_per_s\tpadding_share");
  EXPECT_EQ(lines[7].substr(0, 2), "7\t");
  for (int64_t k = 8; k <= 12; ++k) w.append(step_row(k));
  lines = count_rows("steps");
  ASSERT_EQ(lines.size(), 13u);
  EXPECT_EQ(lines[12].substr(0, 3), "12\t");
  EXPECT_EQ(count_rows("evals").size(), 2u);
  lines = count_rows("counters");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "rows_skipped\t4");
  lines = count_rows("attrs");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "name\ttiny");
  // The units the file records (written before SWMR started), read while the writer is open.
  lines = count_rows("columns");
  ASSERT_EQ(lines.size(), 1 + metrics_columns().size());
  EXPECT_EQ(lines[0], "table\tname\tunit\tdescription");
  EXPECT_THAT(lines, Contains(HasSubstr("steps\ttokens_per_s\ttokens/s\t")));
  const auto all = run_r1dist("metrics " + path);
  EXPECT_EQ(all.code, 0);
  EXPECT_THAT(all.out, HasSubstr("# evals\n"));
  const auto bad = run_r1dist("metrics " + (dir / "none.h5"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.err, HasSubstr("none.h5"));
}

// A run directory stands for its metrics.h5; a file that is not HDF5 gets one clean line.
TEST(Metrics, ReadsARunDirectoryAndRefusesAFileThatIsNotHdf5) {
  TempDir dir;
  {
    MetricsWriter w(dir / "metrics.h5", false, 0);
    StepRecord r;
    r.step = 1;
    r.loss = 2.5;
    w.append(r);
  }
  auto r = run_r1dist("metrics " + dir.path + " --table steps");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\n1\t2.5\t"));
  write_text(dir / "notes.txt", "not an HDF5 file\n");
  r = run_r1dist("metrics " + (dir / "notes.txt"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr((dir / "notes.txt") + " is not an HDF5 file"));
  EXPECT_THAT(r.err, Not(HasSubstr("bytes actually read")));
  TempDir empty;
  r = run_r1dist("metrics " + empty.path);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(empty.path + " has no metrics.h5"));
}

// `r1dist train --json` on a tiny CPU run with evaluations, checkpoints and the final
// evaluation: the time split of the command ends the log, and the same parts with the same
// figures are in the JSON, in metrics.h5 /time_split and in `r1dist metrics --table
// time_split`; the parts and other add up to the total. Checkpoints are written in the
// background, each logged with how long it took.
TEST(Cli, TrainEndsWithItsTimeSplitInTheLogTheJsonAndTheMetrics) {
  TempDir d;
  const auto out = d / "run";
  // Two steps, evaluations (one row) at steps 0 and 2, checkpoints at steps 1 and 2.
  const auto r = run_r1dist("train --cfg " + run_config(out, 1, 1, 2) +
                            " --json --set eval.every_steps=2 --set data.eval_rows=1 --set eval.kl_rows=1"
                            " --set output.save_every=1 --set output.keep=1 --set eval.suite=true"
                            " --set eval.max_new_tokens=2 --set 'eval.prompts=[\"What causes anemia?\"]'");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["steps_done"], 2);
  EXPECT_EQ(j["steps_total"], 2);
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["stopped_by"], "");
  EXPECT_EQ(j["adapter_dir"], out + "/adapter");
  EXPECT_EQ(j["last_checkpoint"], checkpoint_path(out, 2));
  EXPECT_EQ(j["metrics_file"], out + "/metrics.h5");
  const std::vector<std::string> names = {"load",   "train_steps", "evals", "checkpoints",
                                          "export", "final_eval",  "other", "total"};
  const auto& split = j["time_split"];
  const auto parts = json_time_split(split, names);
  ASSERT_EQ(parts.size(), names.size());
  for (const char* ran : {"load", "train_steps", "evals", "checkpoints", "export", "final_eval"})
    EXPECT_GT(split[ran]["seconds"].get<double>(), 0) << ran << " ran, so it took some time";
  // The log's table: the same names and figures, as the log formats them.
  EXPECT_THAT(r.err, HasSubstr(format_time_split(
                         parts, "time split of this r1dist train process (seconds, share of the total):")));
  const auto m = read_metrics(out + "/metrics.h5");
  ASSERT_EQ(m.time_split.size(), parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(m.time_split[i].name, parts[i].name);
    EXPECT_EQ(m.time_split[i].seconds, parts[i].seconds) << parts[i].name;
    EXPECT_EQ(m.time_split[i].share, parts[i].share) << parts[i].name;
  }
  const auto tsv = run_r1dist("metrics " + out + " --table time_split");
  EXPECT_EQ(tsv.code, 0) << tsv.err;
  EXPECT_THAT(tsv.out, HasSubstr("name\tseconds\tshare\nload\t"));
  EXPECT_THAT(tsv.out, HasSubstr("\ntotal\t"));
  EXPECT_THAT(r.err, HasSubstr("checkpoint " + checkpoint_path(out, 1) + " (step 1, "));
  EXPECT_THAT(r.err, HasSubstr(" s in the background)"));
  EXPECT_EQ(find_latest_checkpoint(out), checkpoint_path(out, 2));
}

// `checkpoint verify` says what it found: a run without checkpoints is a failure, a metrics
// file is not a damaged checkpoint.
TEST(CheckpointCli, VerifySaysWhenThereIsNothingToVerify) {
  TempDir run;
  write_text(run / "run.json", "{}\n");
  std::filesystem::create_directories(run / "checkpoints");
  { MetricsWriter w(run / "metrics.h5", false, 0); }
  auto r = run_r1dist("checkpoint verify " + run.path);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no checkpoints in " + run.path));
  EXPECT_THAT(r.out, Not(HasSubstr("all intact")));
  r = run_r1dist("checkpoint verify " + (run / "metrics.h5"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("not a checkpoint (it is a metrics file)"));
  EXPECT_THAT(r.out, Not(HasSubstr("DAMAGED")));
}

}  // namespace
}  // namespace r1dist::test
