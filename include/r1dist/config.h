// The run configuration: one typed struct per TOML section, loaded and validated in one
// place (src/config/config.cpp) from a TOML file plus "--set section.key=value" overrides.
// Defaults live here, in the member initializers; the key table in config.cpp drives
// parsing, validation, to_toml() and config_key_docs(). Kept free of toml++ on purpose.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace r1dist {

struct ModelConfig {
  std::string path;             // HF model directory (config.json + safetensors); required
  std::string dtype = "bf16";   // bf16|fp32
  std::string device = "auto";  // auto|cpu|cuda
  std::string name;             // display name; empty = directory name
};

struct LoraConfig {
  int r = 16;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
  bool rslora = false;  // scale alpha / sqrt(r) instead of alpha / r
};

struct QuantConfig {
  std::string mode = "nf4";  // nf4|none
  bool double_quant = true;
};

// Column names of a row in the data set.
struct DataFields {
  std::string question = "Question", cot = "Complex_CoT", response = "Response";
};

struct DataConfig {
  std::string path;             // optional at parse time; the train command requires it
  std::string format = "auto";  // auto|json|jsonl
  DataFields fields;
  int64_t n_samples = 0;         // 0 = all
  std::string sample = "first";  // first|random
  int64_t eval_rows = 0;         // held-out rows; exclusive with eval_fraction
  double eval_fraction = 0.0;
  std::string template_text;  // TOML key: template; empty = built-in
  bool train_on_prompt = true;
  int64_t max_seq_len = 2048;
  std::string overlong = "truncate";  // truncate|drop
  std::string on_bad_row = "error";   // error|skip
  bool group_by_length = false;
  bool packing = false;
  int threads = 0;  // 0 = hardware concurrency
};

struct TrainConfig {
  int64_t seed = 3407;
  double lr = 2e-4;
  int64_t steps = 60;  // 0 = evaluation only
  int64_t micro_batch = 2;
  int64_t grad_accum = 4;
  int64_t warmup_steps = 5;
  std::string schedule = "linear";  // linear|cosine|constant
  double weight_decay = 0.01;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  double max_grad_norm = 1.0;           // 0 = no clipping
  std::string checkpointing = "layer";  // none|layer
};

struct EvalConfig {
  int64_t every_steps = 0;  // 0 = only at the end
  double max_kl = 0.0;      // 0 = off
  int64_t kl_rows = 8;
  std::string prompt = "28岁程序员，常年熬夜，头晕目眩，恶心";
  int64_t max_new_tokens = 256;
};

struct DistConfig {
  std::string backend = "auto";  // auto|nccl|mpi
  int64_t timeout_s = 600;
};

struct OutputConfig {
  std::string dir = "runs/default";
  int64_t keep = 3;
  int64_t save_every = 0;  // 0 = only at the end
};

struct Config {
  ModelConfig model;
  LoraConfig lora;
  QuantConfig quant;
  DataConfig data;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
  OutputConfig output;

  std::string source_path;  // file it came from ("" for defaults/strings)

  // Every key including defaults, sections in the order above; parses back to an equal
  // Config.
  std::string to_toml() const;
};

// Compares every configuration value; source_path is provenance, not configuration.
bool operator==(const Config& a, const Config& b);
bool operator!=(const Config& a, const Config& b);

// Parses and validates a file. overrides are "section.key=value" strings (from --set),
// applied before validation and validated the same way; an override replaces the file's
// value for that key. Throws UsageError listing every problem, one per line.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
Config parse_config_string(const std::string& toml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides = {});

// One entry per known key, in table order, for --help and docs.
// type: bool|int|float|string|string list; default_value is TOML syntax.
struct ConfigKeyDoc {
  std::string key, type, doc, default_value;
};
std::vector<ConfigKeyDoc> config_key_docs();

}  // namespace r1dist
