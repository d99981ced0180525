// Config loading: every validation rule, overrides, the error format and round-tripping.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/base/error.h"

using namespace r1dist;
using r1dist::parse_config_string;

namespace {

const std::string kModel = "[model]\npath = \"/m\"\n";

// The UsageError message for text (+ overrides), or a test failure when it loads.
std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse_config_string(text, "cfg.toml", sets);
  } catch (const r1dist::UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError for:\n" << text;
  return "";
}

Config load(const std::string& text, const std::vector<std::string>& sets = {}) {
  return parse_config_string(text, "cfg.toml", sets);
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1)
    out.push_back(s.substr(start, nl - start));
  out.push_back(s.substr(start));
  return out;
}

#define EXPECT_HAS(haystack, needle)                    \
  EXPECT_NE((haystack).find(needle), std::string::npos) \
      << "missing: " << (needle) << "\nin: " << (haystack)

}  // namespace

TEST(ConfigTest, OnlyModelPathGivesDefaults) {
  Config c = load(kModel);
  EXPECT_EQ(c.model.path, "/m");
  EXPECT_EQ(c.source_path, "");
  EXPECT_EQ(c.data.path, "");  // optional at parse time
  Config expected;
  expected.model.path = "/m";
  EXPECT_EQ(c, expected);
  EXPECT_EQ(c.lora.targets.size(), 7u);
  EXPECT_DOUBLE_EQ(c.train.lr, 2e-4);
  EXPECT_EQ(c.train.schedule, Schedule::linear);
  EXPECT_TRUE(c.data.packing) << "packing is exact, so the default";
  EXPECT_EQ(c.model.display_name(), "m");
}

TEST(ConfigTest, ParsesEverySection) {
  Config c = load(R"(
[model]
path = "/models/qwen2-0.5b"
dtype = "fp32"
device = "cpu"
name = "tiny"
[lora]
r = 8
alpha = 32          # an integer where a float is expected
dropout = 0.05
targets = ["q_proj", "v_proj"]
rslora = true
[quant]
mode = "none"
double_quant = false
[data]
path = "d.jsonl"
format = "alpaca"
n_samples = 500
sample = "random"
eval_rows = 10
template = "Q: {question}\nA:"
train_on_prompt = false
max_seq_len = 1024
overlong = "drop"
on_bad_row = "skip"
group_by_length = true
packing = false
threads = 4
[data.fields]
question = "q"
cot = "c"
response = "r"
[train]
seed = 1
lr = 1e-4
steps = 0
micro_batch = 1
grad_accum = 16
warmup_steps = 0
schedule = "cosine"
weight_decay = 0
adam_beta1 = 0.8
adam_beta2 = 0.95
adam_eps = 1e-6
max_grad_norm = 0.5
checkpointing = "none"
[eval]
every_steps = 10
max_kl = 0.5
kl_rows = 4
[dist]
backend = "mpi"
timeout_s = 60
[output]
dir = "runs/x"
keep = 1
save_every = 20
)");
  EXPECT_EQ(c.model.dtype, ComputeDtype::fp32);
  EXPECT_EQ(c.model.device, DeviceChoice::cpu);
  EXPECT_EQ(c.model.name, "tiny");
  EXPECT_EQ(c.lora.r, 8);
  EXPECT_DOUBLE_EQ(c.lora.alpha, 32.0);
  EXPECT_DOUBLE_EQ(c.lora.dropout, 0.05);
  EXPECT_EQ(c.lora.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_TRUE(c.lora.rslora);
  EXPECT_EQ(c.quant.mode, QuantMode::none);
  EXPECT_FALSE(c.quant.double_quant);
  EXPECT_EQ(c.data.path, "d.jsonl");
  EXPECT_EQ(c.data.format, DataFormat::alpaca);
  EXPECT_EQ(c.data.n_samples, 500);
  EXPECT_EQ(c.data.sample, SampleMode::random);
  EXPECT_EQ(c.data.eval_rows, 10);
  EXPECT_EQ(c.data.template_text, "Q: {question}\nA:");
  EXPECT_FALSE(c.data.train_on_prompt);
  EXPECT_EQ(c.data.max_seq_len, 1024);
  EXPECT_EQ(c.data.overlong, OverlongPolicy::drop);
  EXPECT_EQ(c.data.on_bad_row, BadRowPolicy::skip);
  EXPECT_TRUE(c.data.group_by_length);
  EXPECT_FALSE(c.data.packing);
  EXPECT_EQ(c.data.threads, 4);
  EXPECT_EQ(c.data.fields.question, "q");
  EXPECT_EQ(c.data.fields.cot, "c");
  EXPECT_EQ(c.data.fields.response, "r");
  EXPECT_EQ(c.train.seed, 1);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-4);
  EXPECT_EQ(c.train.steps, 0);
  EXPECT_EQ(c.train.micro_batch, 1);
  EXPECT_EQ(c.train.grad_accum, 16);
  EXPECT_EQ(c.train.warmup_steps, 0);
  EXPECT_EQ(c.train.schedule, Schedule::cosine);
  EXPECT_DOUBLE_EQ(c.train.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(c.train.adam_beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.train.adam_beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.train.adam_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.train.max_grad_norm, 0.5);
  EXPECT_EQ(c.train.checkpointing, Checkpointing::none);
  EXPECT_EQ(c.eval.every_steps, 10);
  EXPECT_DOUBLE_EQ(c.eval.max_kl, 0.5);
  EXPECT_EQ(c.eval.kl_rows, 4);
  EXPECT_EQ(c.dist.backend, Backend::mpi);
  EXPECT_STREQ(to_string(c.dist.backend), "mpi");
  EXPECT_EQ(c.dist.timeout_s, 60);
  EXPECT_EQ(c.output.dir, "runs/x");
  EXPECT_EQ(c.output.keep, 1);
  EXPECT_EQ(c.output.save_every, 20);
}

TEST(ConfigTest, MissingModelPath) {
  std::string msg = error_of("[train]\nlr = 1e-4\n");
  EXPECT_EQ(lines_of(msg).size(), 1u) << msg;
  EXPECT_EQ(msg.rfind("cfg.toml: missing required key 'model.path'", 0), 0u) << msg;
  EXPECT_HAS(msg, "HINT:");
}

TEST(ConfigTest, EmptyStringsRejectedWhereNeeded) {
  EXPECT_EQ(error_of("[model]\npath = \"\"\n"), "cfg.toml:2: model.path must not be empty");
  EXPECT_EQ(error_of(kModel + "[data.fields]\ncot = \"\"\n"),
            "cfg.toml:4: data.fields.cot must not be empty");
  EXPECT_EQ(error_of(kModel + "[output]\ndir = \"\"\n"),
            "cfg.toml:4: output.dir must not be empty");
  EXPECT_EQ(load(kModel + "name = \"\"\n").model.name, "");  // name may stay empty
}

TEST(ConfigTest, SyntaxErrorHasLineAndColumn) {
  std::string msg = error_of("[model]\npath = \"/m\"\nr = = 3\n");
  EXPECT_EQ(msg.rfind("cfg.toml:3:", 0), 0u) << msg;
  // <file>:<line>:<col>: <description>, the description being toml++'s own text.
  auto parts = msg.substr(std::string("cfg.toml:3:").size());
  ASSERT_NE(parts.find(": "), std::string::npos) << msg;
  EXPECT_GT(std::stoi(parts.substr(0, parts.find(": "))), 0) << msg;
  EXPECT_GT(parts.size(), parts.find(": ") + 2) << msg;
  EXPECT_EQ(lines_of(msg).size(), 1u) << msg;
}

TEST(ConfigTest, UnknownKeySuggestsNearest) {
  EXPECT_EQ(error_of(kModel + "[train]\nlearning_rate = 1e-4\n"),
            "cfg.toml:4: unknown key 'train.learning_rate' (did you mean 'train.lr'?)");
  EXPECT_EQ(error_of(kModel + "[train]\nlrr = 1e-4\n"),
            "cfg.toml:4: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(error_of(kModel + "[train]\nwarmup_step = 1\n"),
            "cfg.toml:4: unknown key 'train.warmup_step' (did you mean 'train.warmup_steps'?)");
  EXPECT_EQ(error_of(kModel + "[train]\nevery_steps = 5\n"),
            "cfg.toml:4: unknown key 'train.every_steps' (did you mean 'eval.every_steps'?)");
  // Nothing close: no guess.
  EXPECT_EQ(error_of(kModel + "[train]\nbanana_split = 5\n"),
            "cfg.toml:4: unknown key 'train.banana_split'");
  // A key outside any section.
  EXPECT_EQ(error_of("lr = 1\n" + kModel),
            "cfg.toml:1: unknown key 'lr' (did you mean 'train.lr'?)");
}

TEST(ConfigTest, UnknownSection) {
  EXPECT_EQ(error_of(kModel + "[trian]\nlr = 1e-4\n"),
            "cfg.toml:3: unknown section '[trian]' (did you mean '[train]'?)");
  EXPECT_EQ(error_of(kModel + "[optimizer]\nlr = 1e-4\n"),
            "cfg.toml:3: unknown section '[optimizer]'");
  EXPECT_EQ(error_of(kModel + "[train.optim]\nx = 1\n"), "cfg.toml:3: unknown key 'train.optim'");
}

TEST(ConfigTest, UnknownNestedKey) {
  std::string msg = error_of(kModel + "[data.fields]\nfoo = \"x\"\n");
  EXPECT_EQ(msg.rfind("cfg.toml:4: unknown key 'data.fields.foo'", 0), 0u) << msg;
  EXPECT_EQ(
      error_of(kModel + "[data.fields]\nquestoin = \"x\"\n"),
      "cfg.toml:4: unknown key 'data.fields.questoin' (did you mean 'data.fields.question'?)");
  EXPECT_EQ(error_of(kModel + "[data]\nfield.question = \"x\"\n"),
            "cfg.toml:4: unknown key 'data.field' (did you mean 'data.fields'?)");
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_EQ(error_of(kModel + "[train]\nlr = \"fast\"\n"),
            "cfg.toml:4: train.lr: expected a float, got a string");
  EXPECT_EQ(error_of(kModel + "[train]\nsteps = 1.5\n"),
            "cfg.toml:4: train.steps: expected an integer, got a float");
  EXPECT_EQ(error_of(kModel + "[train]\nsteps = 60.0\n"),
            "cfg.toml:4: train.steps: expected an integer, got a float");
  EXPECT_EQ(error_of(kModel + "[lora]\nrslora = 1\n"),
            "cfg.toml:4: lora.rslora: expected a boolean, got an integer");
  EXPECT_EQ(error_of(kModel + "[lora]\ntargets = \"q_proj\"\n"),
            "cfg.toml:4: lora.targets: expected an array of strings, got a string");
  EXPECT_EQ(error_of(kModel + "[lora]\ntargets = [\"q_proj\", 3]\n"),
            "cfg.toml:4: lora.targets[1]: expected a string, got an integer");
  EXPECT_EQ(error_of(kModel + "name = 2024-01-01\n"),
            "cfg.toml:3: model.name: expected a string, got a date");
  EXPECT_EQ(error_of("train = 5\n" + kModel),
            "cfg.toml:1: train: expected a table, got an integer");
  EXPECT_EQ(error_of(kModel + "[lora]\nr = { x = 1 }\n"),
            "cfg.toml:4: lora.r: expected an integer, got a table");
  // Integers are fine where a float is expected.
  EXPECT_DOUBLE_EQ(load(kModel + "[train]\nlr = 1\n").train.lr, 1.0);
}

TEST(ConfigTest, OutOfRange) {
  struct Case {
    std::string section, line, message;
  };
  const std::vector<Case> bad = {
      {"lora", "r = 0", "lora.r = 0 is out of range [1, 1024]"},
      {"lora", "r = 1025", "lora.r = 1025 is out of range [1, 1024]"},
      // Would wrap to 1 if narrowed to int before the check.
      {"lora", "r = 4294967297", "lora.r = 4294967297 is out of range [1, 1024]"},
      {"lora", "alpha = 0", "lora.alpha = 0.0 is out of range (0, inf)"},
      {"lora", "dropout = 1.0", "lora.dropout = 1.0 is out of range [0, 1)"},
      {"lora", "dropout = -0.1", "lora.dropout = -0.1 is out of range [0, 1)"},
      {"train", "lr = 0", "train.lr = 0.0 is out of range (0, 1]"},
      {"train", "lr = 1.5", "train.lr = 1.5 is out of range (0, 1]"},
      {"train", "seed = -1", "train.seed = -1 is out of range [0, inf)"},
      {"train", "steps = -1", "train.steps = -1 is out of range [0, inf)"},
      {"train", "micro_batch = 0", "train.micro_batch = 0 is out of range [1, inf)"},
      {"train", "grad_accum = 0", "train.grad_accum = 0 is out of range [1, inf)"},
      {"train", "warmup_steps = -1", "train.warmup_steps = -1 is out of range [0, inf)"},
      {"train", "weight_decay = -0.01", "train.weight_decay = -0.01 is out of range [0, inf)"},
      {"train", "adam_beta1 = 1", "train.adam_beta1 = 1.0 is out of range [0, 1)"},
      {"train", "adam_beta2 = -0.5", "train.adam_beta2 = -0.5 is out of range [0, 1)"},
      {"train", "adam_eps = 0", "train.adam_eps = 0.0 is out of range (0, inf)"},
      {"train", "max_grad_norm = -1", "train.max_grad_norm = -1.0 is out of range [0, inf)"},
      {"train", "memory_budget_gb = -1", "train.memory_budget_gb = -1.0 is out of range [0, inf)"},
      {"data", "max_seq_len = 15", "data.max_seq_len = 15 is out of range [16, 131072]"},
      {"data", "max_seq_len = 131073", "data.max_seq_len = 131073 is out of range [16, 131072]"},
      {"data", "n_samples = -1", "data.n_samples = -1 is out of range [0, inf)"},
      {"data", "eval_rows = -1", "data.eval_rows = -1 is out of range [0, inf)"},
      {"data", "eval_fraction = 1", "data.eval_fraction = 1.0 is out of range [0, 1)"},
      {"data", "threads = 257", "data.threads = 257 is out of range [0, 256]"},
      {"eval", "every_steps = -1", "eval.every_steps = -1 is out of range [0, inf)"},
      {"eval", "max_kl = -1", "eval.max_kl = -1.0 is out of range [0, inf)"},
      {"eval", "kl_rows = 0", "eval.kl_rows = 0 is out of range [1, inf)"},
      {"dist", "timeout_s = 0", "dist.timeout_s = 0 is out of range [1, inf)"},
      {"output", "keep = 0", "output.keep = 0 is out of range [1, inf)"},
      {"output", "save_every = -1", "output.save_every = -1 is out of range [0, inf)"},
      {"lora", "alpha = inf", "lora.alpha = inf is not a finite number"},
      {"train", "lr = nan", "train.lr = nan is not a finite number"},
      // Values that fp32 (where the optimizer computes) cannot hold: adam_eps = 1e-300 became
      // 0 there and made every adapter NaN at step 1.
      {"train", "adam_eps = 1e-300",
       "train.adam_eps = 1e-300 underflows fp32, which r1dist computes in: use 0 or a magnitude from 1.2e-38 to "
       "3.4e+38"},
      {"train", "weight_decay = 1e-45", "train.weight_decay = 1e-45 underflows fp32"},
      {"lora", "alpha = 1e39", "lora.alpha = 1e+39 overflows fp32"},
  };
  for (const auto& c : bad) {
    const auto err = error_of(kModel + "[" + c.section + "]\n" + c.line + "\n");
    EXPECT_EQ(err.substr(0, std::min(err.size(), 12 + std::string(c.message).size())), "cfg.toml:4: " + std::string(c.message));
  }

  // The edges that are inside.
  Config ok = load(kModel +
                   "[lora]\nr = 1024\ndropout = 0.0\n[train]\nlr = 1\nadam_beta2 = 0.0\n"
                   "[data]\nmax_seq_len = 16\nthreads = 256\n");
  EXPECT_EQ(ok.lora.r, 1024);
  EXPECT_EQ(ok.data.max_seq_len, 16);
}

TEST(ConfigTest, EnumStrings) {
  EXPECT_EQ(error_of(kModel + "[train]\nschedule = \"cosin\"\n"),
            "cfg.toml:4: train.schedule = 'cosin' is not one of linear, cosine, constant "
            "(did you mean 'cosine'?)");
  EXPECT_EQ(error_of(kModel + "device = \"tpu-v5-pod\"\n"),
            "cfg.toml:3: model.device = 'tpu-v5-pod' is not one of auto, cpu, cuda");
  EXPECT_EQ(error_of(kModel + "dtype = \"BF16\"\n"),
            "cfg.toml:3: model.dtype = 'BF16' is not one of bf16, fp32 (did you mean 'bf16'?)");
  std::string msg = error_of(kModel +
                             "[quant]\nmode = \"nf5\"\n[data]\nformat = \"csv\"\n"
                             "[dist]\nbackend = \"gloo\"\n");
  EXPECT_HAS(msg, "cfg.toml:4: quant.mode = 'nf5' is not one of nf4, none (did you mean 'nf4'?)");
  EXPECT_HAS(msg, "cfg.toml:6: data.format = 'csv' is not one of auto, medical_o1, messages, sharegpt, alpaca, "
                  "prompt_completion, text");
  EXPECT_HAS(msg, "cfg.toml:8: dist.backend = 'gloo' is not one of auto, nccl, mpi");
}

TEST(ConfigTest, LoraTargets) {
  EXPECT_EQ(error_of(kModel + "[lora]\ntargets = [\"q_proj\", \"qproj\"]\n"),
            "cfg.toml:4: lora.targets entry 'qproj' is not one of q_proj, k_proj, v_proj, o_proj, "
            "gate_proj, up_proj, down_proj (did you mean 'q_proj'?)");
  EXPECT_EQ(error_of(kModel + "[lora]\ntargets = [\"q_proj\", \"v_proj\", \"q_proj\"]\n"),
            "cfg.toml:4: lora.targets entry 'q_proj' is repeated");
  EXPECT_EQ(error_of(kModel + "[lora]\ntargets = []\n"),
            "cfg.toml:4: lora.targets must not be empty");
}

TEST(ConfigTest, EvalRowsAndFractionAreExclusive) {
  EXPECT_EQ(error_of(kModel + "[data]\neval_rows = 10\neval_fraction = 0.1\n"),
            "cfg.toml:5: data.eval_rows and data.eval_fraction are mutually exclusive; set one of "
            "them to 0");
  EXPECT_EQ(load(kModel + "[data]\neval_rows = 10\neval_fraction = 0.0\n").data.eval_rows, 10);
  EXPECT_DOUBLE_EQ(load(kModel + "[data]\neval_rows = 0\neval_fraction = 0.1\n").data.eval_fraction,
                   0.1);
}

TEST(ConfigTest, AMemoryBudgetExcludesKeepLayersAndNeedsLayerCheckpointing) {
  EXPECT_EQ(error_of(kModel + "[train]\nkeep_layers = 4\nmemory_budget_gb = 40\n"),
            "cfg.toml:5: train.memory_budget_gb and train.keep_layers both choose what the backward recomputes; set one of "
            "them to 0");
  const std::string msg = error_of(kModel + "[train]\ncheckpointing = \"none\"\nmemory_budget_gb = 40\n");
  EXPECT_NE(msg.find("cfg.toml:5: train.memory_budget_gb chooses how many layers skip the recomputation"),
            std::string::npos) << msg;
  EXPECT_DOUBLE_EQ(load(kModel + "[train]\nmemory_budget_gb = 40\n").train.memory_budget_gb, 40.0);
}

// train.offload = "auto" chooses what the manual offload keys say, within a budget.
TEST(ConfigTest, AutomaticOffloadExcludesTheManualKeysAndNeedsABudget) {
  EXPECT_EQ(error_of(kModel + "[train]\noffload = \"auto\"\noffload_layers = 4\n"),
            "cfg.toml:4: train.offload = \"auto\" and train.offload_layers both choose the offloaded layers; set "
            "offload_layers = 0 or offload = \"manual\"");
  EXPECT_HAS(error_of(kModel + "[train]\noffload = \"auto\"\noffload_recomputed_inputs = true\n"),
             "cfg.toml:4: train.offload = \"auto\" and train.offload_recomputed_inputs both choose");
  EXPECT_HAS(error_of(kModel + "[train]\noffload = \"auto\"\noffload_attention = true\n"),
             "cfg.toml:4: train.offload = \"auto\" and train.offload_attention both choose");
  EXPECT_HAS(error_of(kModel + "[train]\ncheckpointing = \"none\"\noffload = \"auto\"\n"),
             "cfg.toml:5: train.offload = \"auto\" plans within a memory budget");
  EXPECT_HAS(error_of(kModel + "[train]\ncheckpointing = \"layer\"\noffload = \"auto\"\n"),
             "plans within a memory budget");
  EXPECT_HAS(error_of(kModel + "[train]\noffload = \"always\"\n"), "cfg.toml:4: train.offload");
  // With checkpointing = "auto" (the default) or a budget it loads.
  EXPECT_EQ(load(kModel + "[train]\noffload = \"auto\"\n").train.offload, OffloadChoice::automatic);
  EXPECT_EQ(load(kModel + "[train]\ncheckpointing = \"layer\"\nmemory_budget_gb = 20\noffload = \"auto\"\n")
                .train.offload,
            OffloadChoice::automatic);
  EXPECT_EQ(load(kModel).train.offload, OffloadChoice::manual);
}

TEST(ConfigTest, PackingIsABool) {
  EXPECT_TRUE(load(kModel + "[data]\npacking = true\n").data.packing);
  EXPECT_FALSE(load(kModel + "[data]\npacking = false\n").data.packing);
  const std::string msg = error_of(kModel + "[data]\npacking = 1\n");
  EXPECT_NE(msg.find("cfg.toml:4: data.packing: expected a boolean"), std::string::npos) << msg;
}

TEST(ConfigTest, AllProblemsInOneMessage) {
  std::string msg = error_of("[train]\nlr = \"fast\"\nstepz = 5\n[lora]\nr = 0\n");
  auto lines = lines_of(msg);
  ASSERT_EQ(lines.size(), 4u) << msg;
  EXPECT_HAS(msg, "cfg.toml:2: train.lr: expected a float, got a string");
  EXPECT_HAS(msg, "cfg.toml:3: unknown key 'train.stepz' (did you mean 'train.steps'?)");
  EXPECT_HAS(msg, "cfg.toml:5: lora.r = 0 is out of range [1, 1024]");
  EXPECT_HAS(msg, "cfg.toml: missing required key 'model.path'");
}

TEST(ConfigTest, Overrides) {
  Config c = load(
      kModel + "[train]\nlr = 3e-4\n",
      {"train.lr=1e-4", "model.path=/x/y", "lora.targets=[\"q_proj\"]", "data.fields.question=Q",
       "train.steps=7", "lora.rslora=true", "output.dir=2024", "model.name=a b = c"});
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-4);
  EXPECT_EQ(c.model.path, "/x/y");
  EXPECT_EQ(c.lora.targets, std::vector<std::string>{"q_proj"});
  EXPECT_EQ(c.data.fields.question, "Q");
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_TRUE(c.lora.rslora);
  EXPECT_EQ(c.output.dir, "2024");      // a string key takes a bare number as text
  EXPECT_EQ(c.model.name, "a b = c");  // split at the first '='

  EXPECT_EQ(load("", {"model.path=\"quoted\""}).model.path,
            "quoted");                                          // satisfies the required key
  EXPECT_EQ(load(kModel, {"lora.r=8", "lora.r=4"}).lora.r, 4);  // the last one wins
  // An override replaces the file's value, so a bad value there no longer matters.
  EXPECT_DOUBLE_EQ(load(kModel + "[train]\nlr = \"fast\"\n", {"train.lr=0.001"}).train.lr, 1e-3);
}

TEST(ConfigTest, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(error_of(kModel, {"train.lrr=1"}),
            "--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(error_of(kModel, {"lora.r=x"}),
            "--set lora.r=x: lora.r: expected an integer, got a string");
  EXPECT_EQ(error_of(kModel, {"lora.r=0"}), "--set lora.r=0: lora.r = 0 is out of range [1, 1024]");
  EXPECT_EQ(error_of(kModel, {"train.schedule=cosin"}),
            "--set train.schedule=cosin: train.schedule = 'cosin' is not one of linear, cosine, "
            "constant (did you mean 'cosine'?)");
  EXPECT_EQ(error_of(kModel, {"foo"}), "--set foo: expected section.key=value");
  EXPECT_EQ(error_of(kModel, {"=1"}), "--set =1: expected section.key=value");
  EXPECT_EQ(error_of(kModel, {"model.path="}), "--set model.path=: model.path must not be empty");
  // Several at once, with a file problem too.
  std::string msg = error_of(kModel + "[lora]\nr = 0\n", {"foo", "train.lrr=1"});
  EXPECT_EQ(lines_of(msg).size(), 3u) << msg;
  EXPECT_HAS(msg, "cfg.toml:4: lora.r = 0 is out of range [1, 1024]");
  EXPECT_HAS(msg, "--set foo: expected section.key=value");
  EXPECT_HAS(msg, "--set train.lrr=1: unknown key 'train.lrr'");
}

TEST(ConfigTest, ToTomlRoundTrips) {
  Config c;
  c.model.path = "C:\\models\\\"qwen\"";
  c.model.name = "tab\there";
  c.lora.targets = {"down_proj", "q_proj"};
  c.lora.alpha = 32;
  c.lora.dropout = 0.1;
  c.data.template_text = "Q: {q}\n思考: {cot}\r\nA:\x01";
  c.data.fields.cot = "CoT";
  c.data.eval_fraction = 0.3;
  c.train.lr = 3e-5;
  c.train.adam_eps = 1e-12;
  c.train.adam_beta2 = 0.999;
  c.eval.max_kl = 1.0 / 3.0;
  c.output.keep = 9;
  std::string text = c.to_toml();
  Config back = load(text);
  EXPECT_EQ(back, c) << text;
  EXPECT_EQ(back.to_toml(), text);
  EXPECT_EQ(back.data.template_text, c.data.template_text);
  EXPECT_DOUBLE_EQ(back.eval.max_kl, 1.0 / 3.0);

  // Sections in struct order.
  size_t last = 0;
  for (const char* s :
       {"[model]", "[lora]", "[quant]", "[data]", "[train]", "[eval]", "[dist]", "[output]"}) {
    size_t at = text.find(std::string(s) + "\n");
    ASSERT_NE(at, std::string::npos) << s << "\n" << text;
    EXPECT_GE(at, last) << s;
    last = at;
  }
  // operator== sees a one-field difference, so the round trip above can fail.
  back.eval.kl_rows += 1;
  EXPECT_NE(back, c);
}

TEST(ConfigTest, KeyDocsCoverEveryKey) {
  auto docs = r1dist::config_key_docs();
  Config c;
  c.model.path = "/m";
  std::string text = c.to_toml();
  size_t rendered = 0;
  for (const auto& line : lines_of(text)) rendered += line.find(" = ") != std::string::npos;
  EXPECT_EQ(docs.size(), rendered);
  for (const auto& d : docs) {
    EXPECT_FALSE(d.doc.empty()) << d.key;
    EXPECT_FALSE(d.type.empty()) << d.key;
    // Every documented key is a real key: setting it to its own default is accepted.
    if (d.key != "model.path")
      EXPECT_NO_THROW(load(kModel, {d.key + "=" + d.default_value})) << d.key;
  }
  auto find = [&](const std::string& key) {
    for (const auto& d : docs)
      if (d.key == key) return d;
    ADD_FAILURE() << key;
    return r1dist::ConfigKeyDoc{};
  };
  EXPECT_EQ(find("lora.r").type, "int");
  EXPECT_EQ(find("lora.r").default_value, "16");
  EXPECT_HAS(find("lora.r").doc, "[1, 1024]");
  EXPECT_EQ(find("train.lr").type, "float");
  EXPECT_EQ(find("lora.targets").type, "string list");
  EXPECT_EQ(find("train.schedule").default_value, "\"linear\"");
  EXPECT_HAS(find("train.schedule").doc, "linear, cosine, constant");
  EXPECT_EQ(find("data.template").type, "string");
  EXPECT_HAS(find("model.path").doc, "Required");
}

TEST(ConfigTest, DefaultsPassValidation) {
  // The defaults in config.h go through the same checks as user values.
  Config c;
  c.model.path = "/m";
  EXPECT_EQ(load(c.to_toml()), c);
}

TEST(ConfigTest, LoadConfigFromFile) {
  std::string path = ::testing::TempDir() + "r1dist_config_test.toml";
  {
    std::ofstream out(path);
    out << kModel << "[train]\nsteps = 3\n";
  }
  Config c = r1dist::load_config(path, {"train.lr=0.01"});
  EXPECT_EQ(c.source_path, path);
  EXPECT_EQ(c.train.steps, 3);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.01);
  {
    std::ofstream out(path);
    out << kModel << "[train]\nsteps = -3\n";
  }
  try {
    r1dist::load_config(path);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const r1dist::UsageError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":4: train.steps = -3 is out of range [0, inf)");
  }
  std::remove(path.c_str());
  try {
    r1dist::load_config(path);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const r1dist::UsageError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": cannot open config file", 0), 0u) << e.what();
  }
}

// model.hub_id: what an exported adapter names as its base. Set, it must be "owner/name";
// empty, config.json's _name_or_path when that is a hub id, else the directory's name.
TEST(ConfigTest, HubIdIsCheckedAndDerivedFromTheModelDirectory) {
  EXPECT_EQ(load(kModel + "hub_id = \"Qwen/Qwen2.5-0.5B\"\n").model.hub_id, "Qwen/Qwen2.5-0.5B");
  for (const char* bad : {"qwen", "/abs/path", "a/b/c", "./x", "owner/.hidden", "own er/name"}) {
    const std::string msg = error_of(kModel + "hub_id = \"" + bad + "\"\n");
    EXPECT_HAS(msg, "model.hub_id '" + std::string(bad) + "' is not a hub id");
    EXPECT_HAS(msg, "HINT");
  }
  const std::string root = ::testing::TempDir() + "/hub_id_test";
  std::remove((root + "/R1-1.5B/config.json").c_str());
  std::string cmd = "mkdir -p '" + root + "/R1-1.5B'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ModelConfig m;
  m.path = root + "/R1-1.5B/";
  EXPECT_EQ(m.base_model_id(), "R1-1.5B") << "no config.json: the directory's name";
  auto with_name = [&](const std::string& v) {
    std::ofstream(root + "/R1-1.5B/config.json") << "{\"_name_or_path\": \"" << v << "\", \"model_type\": \"qwen2\"}";
    return m.base_model_id();
  };
  EXPECT_EQ(with_name("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"), "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B");
  EXPECT_EQ(with_name("/home/me/models/r1"), "R1-1.5B") << "a local path is not a hub id";
  EXPECT_EQ(with_name("models/../r1"), "R1-1.5B");
  m.hub_id = "owner/name";
  EXPECT_EQ(m.base_model_id(), "owner/name") << "the key wins";
}
