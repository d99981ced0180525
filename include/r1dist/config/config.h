// The run configuration: one typed struct per TOML section, loaded and validated in one
// place (src/config/config.cpp) from a TOML file plus "--set section.key=value" overrides.
// Defaults live here, in the member initializers; the key table in config.cpp drives
// parsing, validation, to_toml() and config_key_docs(). Kept free of toml++ on purpose.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace r1dist {

// The choices of string-valued keys, typed. Each enum's values are in the order of its TOML
// spellings ("auto" is spelled `automatic` here: auto is a C++ keyword); to_string gives
// the spelling back.
enum class ComputeDtype { bf16, fp32 };
enum class DeviceChoice { automatic, cpu, cuda };
enum class QuantMode { nf4, none };
// The row format of a data file (docs/DATA.md); the file type (a JSON array or JSON Lines) is
// read from the file's first non-blank byte.
enum class DataFormat { automatic, medical_o1, messages, sharegpt, alpaca, prompt_completion, text };
enum class SampleMode { first, random };
enum class OverlongPolicy { truncate, drop };
enum class BadRowPolicy { error, skip };
enum class Schedule { linear, cosine, constant };
enum class Checkpointing { none, layer, automatic };
enum class OffloadChoice { manual, automatic };
enum class Backend { automatic, nccl, mpi };
enum class PromptFormat { template_prompt, chat };

const char* to_string(ComputeDtype v);
const char* to_string(DeviceChoice v);
const char* to_string(QuantMode v);
const char* to_string(DataFormat v);
const char* to_string(SampleMode v);
const char* to_string(OverlongPolicy v);
const char* to_string(BadRowPolicy v);
const char* to_string(Schedule v);
const char* to_string(Checkpointing v);
const char* to_string(OffloadChoice v);
const char* to_string(Backend v);
const char* to_string(PromptFormat v);

struct ModelConfig {
  std::string path;  // HF model directory (config.json + safetensors); required
  ComputeDtype dtype = ComputeDtype::bf16;
  DeviceChoice device = DeviceChoice::automatic;
  std::string name;  // display name in logs, run.json and metrics; empty = directory name
  std::string hub_id;  // "owner/name" of the base model on the Hub; empty = derived (below)
  // The display name: `name`, or the last component of `path`.
  std::string display_name() const;
  // What an exported adapter names as its base (adapter_config.json base_model_name_or_path,
  // the model card): `hub_id`; else PATH/config.json's `_name_or_path` when it is a hub id
  // ("owner/name", not a local path); else the last component of `path`.
  std::string base_model_id() const;
};

// "owner/name" as the Hugging Face Hub spells a model id (letters, digits, '-', '_', '.';
// neither part starting with '.' or '-'), and not an existing local path.
bool looks_like_hub_id(const std::string& s);

struct LoraConfig {
  int r = 16;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
  bool rslora = false;  // scale alpha / sqrt(r) instead of alpha / r
};

struct QuantConfig {
  QuantMode mode = QuantMode::nf4;
  bool double_quant = true;
};

// Column names of a row in the data set, per row format (data.format).
struct DataFields {
  std::string question = "Question", cot = "Complex_CoT", response = "Response";  // medical_o1
  std::string messages = "messages";                                             // messages
  std::string conversations = "conversations";                                   // sharegpt
  std::string instruction = "instruction", input = "input", output = "output";   // alpaca
  std::string prompt = "prompt", completion = "completion";                      // prompt_completion
  std::string text = "text";                                                     // text
  // An assistant turn's (messages, sharegpt) or a row's (alpaca, prompt_completion) optional
  // reasoning, placed in <think> ... </think>.
  std::string reasoning = "reasoning_content";
};

struct DataConfig {
  std::string path;             // optional at parse time; the train command requires it
  DataFormat format = DataFormat::automatic;
  DataFields fields;
  int64_t n_samples = 0;         // 0 = all
  SampleMode sample = SampleMode::first;
  int64_t eval_rows = 0;         // held-out rows; exclusive with eval_fraction
  double eval_fraction = 0.0;
  std::string template_text;  // TOML key: template; empty = built-in
  bool train_on_prompt = false;  // loss on the response / assistant turns only
  int64_t max_seq_len = 2048;
  OverlongPolicy overlong = OverlongPolicy::truncate;
  BadRowPolicy on_bad_row = BadRowPolicy::error;
  bool group_by_length = false;
  // Rows packed into max_seq_len sequences (data/packing.h): exact (attention never crosses
  // a row), so the fast default; false pads each micro-batch to its longest row.
  bool packing = true;
  int threads = 0;  // 0 = hardware concurrency
};

struct TrainConfig {
  int64_t seed = 3407;
  double lr = 2e-4;
  int64_t steps = 60;  // 0 = evaluation only
  // > 0: passes over the training rows instead of train.steps (not both); the steps are
  // ceil(epochs x training rows / rows per step), computed once the data is loaded.
  double epochs = 0;
  int64_t micro_batch = 2;
  int64_t grad_accum = 4;
  int64_t warmup_steps = 5;
  Schedule schedule = Schedule::linear;
  double weight_decay = 0.01;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  double max_grad_norm = 1.0;  // 0 = no clipping
  // auto: layer checkpointing that keeps as many of the last layers as fit
  // memory_budget_gb, or 90% of the GPU's memory when that is 0 (config/memory_estimate.h:
  // resolve_checkpointing); on the CPU every layer is recomputed, as with layer.
  Checkpointing checkpointing = Checkpointing::automatic;
  // With checkpointing = layer: the last keep_layers layers keep their activations for the
  // backward instead of recomputing them (faster, more memory; 0 = every layer recomputed).
  int64_t keep_layers = 0;
  // With checkpointing = layer: the recompute_mlp_layers layers before the kept ones keep the
  // attention's activations and recompute only the MLP's gate and up in the backward.
  int64_t recompute_mlp_layers = 0;
  // On the GPU: of the layers not recomputed whole, this many (spread evenly) keep their input,
  // residual sum and (kept layers) gate and up in page-locked host memory until the backward
  // (tensor/offload.h); the estimate and memory_budget_gb's plan count it.
  int64_t offload_layers = 0;
  // On the GPU: the layers recomputed whole keep their input (the only tensor they keep) in
  // page-locked host memory until the backward instead of on the device (tensor/offload.h).
  bool offload_recomputed_inputs = false;
  // On the GPU, with offload_layers: those layers keep q, k, v and the attention's output in
  // host memory too, and recompute the attention from them in the backward.
  bool offload_attention = false;
  // manual: offload what offload_layers and offload_recomputed_inputs say; auto: with a
  // memory budget on the GPU, the planner chooses them too, weighing the host link's measured
  // speed against recomputation at the model's measured layer speed (config/memory_estimate.h:
  // OffloadRates).
  OffloadChoice offload = OffloadChoice::manual;
  // With checkpointing = layer or auto, instead of keep_layers and recompute_mlp_layers: the
  // plan with the least recomputation whose memory estimate (config/memory_estimate.h) fits
  // in this many GB per rank (0 = off with layer; the GPU's memory with auto).
  double memory_budget_gb = 0.0;
};

struct EvalConfig {
  int64_t every_steps = 0;  // 0 = only at the end
  double max_kl = 0.0;      // 0 = off
  // Early stopping: stop after this many evaluations in a row without the held-out loss
  // improving on the best by at least min_delta (0 = off); the best checkpoint is exported.
  int64_t patience = 0;
  double min_delta = 0.0;
  int64_t kl_rows = 8;
  // The full evaluation (r1dist eval) at the end of a run, into output.dir/metrics.h5 /eval.
  bool suite = false;
  std::vector<std::string> prompts = default_eval_prompts();
  int64_t max_new_tokens = 256;
  PromptFormat prompt_format = PromptFormat::template_prompt;  // template: data.template's prompt; chat: the R1 chat template
  double temperature = 0.0;                // 0 = greedy
  double top_p = 0.95;
  std::string mcq_path;                    // rows with options/answer_idx; "" = data.path
  int64_t mcq_rows = 0;                    // 0 = every MCQ row of the file
  // The seed experiment's prompt first, then a few medical questions of our own.
  static std::vector<std::string> default_eval_prompts();
};

struct DistConfig {
  Backend backend = Backend::automatic;
  int64_t timeout_s = 600;
};

struct OutputConfig {
  std::string dir = "runs/default";
  int64_t keep = 3;
  int64_t save_every = 0;  // 0 = only at the end
  bool tensorboard = false;  // TensorBoard event files under dir/tensorboard (formats/tensorboard.h)
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
  // Config. With `section` ("eval", ...): that table alone.
  std::string to_toml(const std::string& section = "") const;
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

// Sets one key of `cfg` from text exactly as --set does (the same parser, choices and ranges),
// the message naming `origin` (a flag: "--dtype"): command-line flags that stand for config
// keys go through here, so each key has one parser. Cross-key rules are not checked.
void set_config_value(Config& cfg, const std::string& key, const std::string& text, const std::string& origin);

// The cross-key rules on what the backward recomputes (train.memory_budget_gb against
// train.keep_layers, train.recompute_mlp_layers and train.checkpointing = "none"): one message
// per broken rule, empty when none is. Config loading reports them at the budget's line; bench
// train at its flags.
std::vector<std::string> recompute_key_conflicts(const TrainConfig& train);
// The same for train.offload = "auto" (against the manual offload keys, and without a budget
// to plan within).
std::vector<std::string> offload_key_conflicts(const TrainConfig& train);

// One entry per known key, in table order, for --help and docs.
// type: bool|int|float|string|string list; default_value is TOML syntax.
struct ConfigKeyDoc {
  std::string key, type, doc, default_value;
};
std::vector<ConfigKeyDoc> config_key_docs();
// The known key closest to `name` (an alias of another trainer, the same key in another
// section, a typo), or "" when none is close.
std::string suggest_config_key(const std::string& name);

}  // namespace r1dist
