// TOML -> Config. One key table (keys()) drives parsing, validation, to_toml() and the key
// docs; defaults come from the member initializers in config.h, never from this file.
#include "r1dist/base/fs.h"
#include "r1dist/config/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>
#include <variant>

#include "r1dist/base/error.h"
#include "r1dist/base/json.h"

namespace r1dist {
namespace detail {
// The TOML spellings of an enum's values, in value order.
template <class E>
const std::vector<std::string>& enum_names();
}  // namespace detail

#define R1_ENUM_NAMES(E, ...)                                           \
  template <>                                                           \
  const std::vector<std::string>& detail::enum_names<E>() {             \
    static const std::vector<std::string> names{__VA_ARGS__};           \
    return names;                                                       \
  }                                                                     \
  const char* to_string(E v) { return detail::enum_names<E>().at(size_t(v)).c_str(); }

R1_ENUM_NAMES(ComputeDtype, "bf16", "fp32")
R1_ENUM_NAMES(DeviceChoice, "auto", "cpu", "cuda")
R1_ENUM_NAMES(QuantMode, "nf4", "none")
R1_ENUM_NAMES(DataFormat, "auto", "medical_o1", "messages", "sharegpt", "alpaca", "prompt_completion", "text")
R1_ENUM_NAMES(SampleMode, "first", "random")
R1_ENUM_NAMES(OverlongPolicy, "truncate", "drop")
R1_ENUM_NAMES(BadRowPolicy, "error", "skip")
R1_ENUM_NAMES(Schedule, "linear", "cosine", "constant")
R1_ENUM_NAMES(Checkpointing, "none", "layer", "auto")
R1_ENUM_NAMES(OffloadChoice, "manual", "auto")
R1_ENUM_NAMES(Backend, "auto", "nccl", "mpi")
R1_ENUM_NAMES(PromptFormat, "template", "chat")
#undef R1_ENUM_NAMES

bool looks_like_hub_id(const std::string& s) {
  const auto slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  auto part_ok = [](const std::string& p) {
    if (p.empty() || p.size() > 96 || p[0] == '.' || p[0] == '-' || p.find("..") != std::string::npos) return false;
    return std::all_of(p.begin(), p.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
             c == '.';
    });
  };
  return part_ok(s.substr(0, slash)) && part_ok(s.substr(slash + 1)) && !exists(s);
}

std::string ModelConfig::base_model_id() const {
  if (!hub_id.empty()) return hub_id;
  std::string text;
  if (try_read_file(path + "/config.json", &text)) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object() && j.contains("_name_or_path") && j["_name_or_path"].is_string()) {
      const std::string id = j["_name_or_path"].get<std::string>();
      if (looks_like_hub_id(id)) return id;
    }
  }
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string ModelConfig::display_name() const {
  if (!name.empty()) return name;
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

namespace {

// An enum-typed key: its value as an index into its TOML spellings.
struct EnumRef {
  void* p;
  int (*get)(const void*);
  void (*set)(void*, int);
  const std::vector<std::string>* names;
  std::string name() const { return (*names)[size_t(get(p))]; }
};

// Where a key lives inside Config; the alternative is also the key's type.
using Ref = std::variant<bool*, int*, int64_t*, double*, std::string*, std::vector<std::string>*, EnumRef>;

template <class T>
Ref make_ref(T* p) {
  if constexpr (std::is_enum_v<T>) {
    return EnumRef{p, [](const void* q) { return int(*static_cast<const T*>(q)); },
                   [](void* q, int v) { *static_cast<T*>(q) = T(v); }, &detail::enum_names<T>()};
  } else {
    return p;
  }
}

// The allowed spellings of a string or enum key ("" = any string).
std::string choices_of(const char* choices, const Ref& r) {
  if (const auto* e = std::get_if<EnumRef>(&r)) {
    std::string out;
    for (const auto& n : *e->names) out += (out.empty() ? "" : "|") + n;
    return out;
  }
  return choices ? choices : "";
}

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Bounds {
  double lo = -kInf, hi = kInf;
  bool lo_open = false, hi_open = false;
};
Bounds closed(double lo, double hi) { return {lo, hi, false, false}; }
Bounds at_least(double lo) { return {lo, kInf, false, true}; }
Bounds above(double lo) { return {lo, kInf, true, true}; }
Bounds below_one(double lo) { return {lo, 1, false, true}; }
Bounds above_to_one(double lo) { return {lo, 1, true, false}; }

enum : unsigned { kRequired = 1, kNonEmpty = 2 };

struct Key {
  const char* name;  // "section.key"; data.fields.* is one level deeper
  Ref (*ref)(Config&);
  const char* doc;
  Bounds range = {};
  const char* choices = nullptr;  // "a|b|c", for strings and for each entry of a list
  unsigned flags = 0;
  const char* aliases = nullptr;  // names other trainers (HF, axolotl) use; only for hints
};

#define R1_REF(member) [](Config& c) -> Ref { return make_ref(&c.member); }

const std::vector<Key>& keys() {
  static const char* proj = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj";
  // clang-format off
  static const std::vector<Key> table = {
      // {key, member, doc,
      //  range, choices, flags, aliases (other trainers' names, for hints)}
      {"model.path", R1_REF(model.path), "HF model directory: config.json, *.safetensors.",
       {}, nullptr, kRequired, "model_name_or_path base_model"},
      {"model.dtype", R1_REF(model.dtype), "Compute dtype of activations and unquantized weights.",
       {}, nullptr, 0, "torch_dtype"},
      {"model.device", R1_REF(model.device), "auto = cuda when available, else cpu.",
       {}, nullptr},
      {"model.name", R1_REF(model.name), "Display name in logs, run.json and metrics; empty = the directory name."},
      {"model.hub_id", R1_REF(model.hub_id), "Hub id (\"owner/name\") an exported adapter names as its base "
       "(adapter_config.json base_model_name_or_path, README.md); empty = config.json's _name_or_path when it is "
       "a hub id, else the directory name."},
      {"lora.r", R1_REF(lora.r), "LoRA rank.",
       closed(1, 1024), nullptr, 0, "rank lora_r"},
      {"lora.alpha", R1_REF(lora.alpha), "The update is scaled by alpha / r.",
       above(0), nullptr, 0, "lora_alpha"},
      {"lora.dropout", R1_REF(lora.dropout), "Dropout on the adapter input while training.",
       below_one(0), nullptr, 0, "lora_dropout"},
      {"lora.targets", R1_REF(lora.targets), "Linear layers given an adapter, each once.",
       {}, proj, kNonEmpty, "target_modules"},
      {"lora.rslora", R1_REF(lora.rslora), "Scale by alpha / sqrt(r) (rank-stabilized LoRA).",
       {}, nullptr, 0, "use_rslora"},
      {"quant.mode", R1_REF(quant.mode), "nf4 = 4-bit NormalFloat (QLoRA); none = dtype.",
       {}, nullptr, 0, "quant_type load_in_4bit"},
      {"quant.double_quant", R1_REF(quant.double_quant), "Quantize nf4 scales to 8 bits.",
       {}, nullptr, 0, "use_double_quant"},
      {"data.path", R1_REF(data.path), "JSON or JSONL file of rows; required by train, not here.",
       {}, nullptr, 0, "dataset dataset_path train_file data_path"},
      {"data.format", R1_REF(data.format),
       "Row format (docs/DATA.md); auto = detected from the first row's keys. JSON array or JSONL is read from the file.",
       {}, nullptr},
      {"data.fields.question", R1_REF(data.fields.question), "medical_o1: column holding the question.",
       {}, nullptr, kNonEmpty},
      {"data.fields.cot", R1_REF(data.fields.cot), "medical_o1: column holding the chain of thought.",
       {}, nullptr, kNonEmpty},
      {"data.fields.response", R1_REF(data.fields.response), "medical_o1: column holding the answer.",
       {}, nullptr, kNonEmpty},
      {"data.fields.messages", R1_REF(data.fields.messages), "messages: column holding the list of {role, content}.",
       {}, nullptr, kNonEmpty},
      {"data.fields.conversations", R1_REF(data.fields.conversations), "sharegpt: column holding the list of {from, value}.",
       {}, nullptr, kNonEmpty},
      {"data.fields.instruction", R1_REF(data.fields.instruction), "alpaca: column holding the instruction.",
       {}, nullptr, kNonEmpty},
      {"data.fields.input", R1_REF(data.fields.input), "alpaca: optional column appended to the instruction.",
       {}, nullptr, kNonEmpty},
      {"data.fields.output", R1_REF(data.fields.output), "alpaca: column holding the answer.",
       {}, nullptr, kNonEmpty},
      {"data.fields.prompt", R1_REF(data.fields.prompt), "prompt_completion: column holding the prompt.",
       {}, nullptr, kNonEmpty},
      {"data.fields.completion", R1_REF(data.fields.completion), "prompt_completion: column holding the answer.",
       {}, nullptr, kNonEmpty},
      {"data.fields.text", R1_REF(data.fields.text), "text: column holding the plain text.",
       {}, nullptr, kNonEmpty},
      {"data.fields.reasoning", R1_REF(data.fields.reasoning),
       "Optional reasoning of an assistant turn (messages, sharegpt) or of a row (alpaca, prompt_completion).",
       {}, nullptr, kNonEmpty},
      {"data.n_samples", R1_REF(data.n_samples), "Rows to use; 0 = all.",
       at_least(0), nullptr, 0, "max_samples num_samples"},
      {"data.sample", R1_REF(data.sample), "First rows or a seeded random subset.",
       {}, nullptr},
      {"data.eval_rows", R1_REF(data.eval_rows), "Held-out eval rows; not with eval_fraction.",
       at_least(0)},
      {"data.eval_fraction", R1_REF(data.eval_fraction), "Held-out fraction; not with eval_rows.",
       below_one(0), nullptr, 0, "val_set_size test_size"},
      {"data.template", R1_REF(data.template_text),
       "Prompt template of single-turn rows; \"chat\" = the R1 chat template; empty = built-in for medical_o1, chat otherwise.",
       {}, nullptr, 0, "prompt_template chat_template"},
      {"data.train_on_prompt", R1_REF(data.train_on_prompt), "Also put loss on the prompt tokens (the user turns, system prompt and template text); false = loss on the response / assistant turns only.",
       {}, nullptr, 0, "train_on_inputs"},
      {"data.max_seq_len", R1_REF(data.max_seq_len), "Tokens per row after the template.",
       closed(16, 131072), nullptr, 0, "max_seq_length max_length sequence_len cutoff_len"},
      {"data.overlong", R1_REF(data.overlong), "Rows longer than max_seq_len.",
       {}, nullptr},
      {"data.on_bad_row", R1_REF(data.on_bad_row), "Rows missing a field or not strings.",
       {}, nullptr},
      {"data.group_by_length", R1_REF(data.group_by_length), "Batch similar lengths together."},
      {"data.packing", R1_REF(data.packing), "Pack each global batch's rows into max_seq_len sequences: no padding, attention stays within a row, so the loss and gradients are the padded ones to rounding; false = pad each micro-batch to its longest row.",
       {}, nullptr, 0, "sample_packing"},
      {"data.threads", R1_REF(data.threads), "Tokenizer threads; 0 = hardware concurrency.",
       closed(0, 256), nullptr, 0, "num_proc dataset_num_proc"},
      {"train.seed", R1_REF(train.seed), "Seed for sampling, dropout and adapter init.",
       at_least(0)},
      {"train.lr", R1_REF(train.lr), "Peak learning rate.",
       above_to_one(0), nullptr, 0, "learning_rate"},
      {"train.steps", R1_REF(train.steps), "Optimizer steps; 0 = evaluation only.",
       at_least(0), nullptr, 0, "max_steps"},
      {"train.epochs", R1_REF(train.epochs),
       "Passes over the training rows instead of train.steps (set one of them); steps = ceil(epochs x rows / global batch). 0 = off.",
       at_least(0), nullptr, 0, "num_train_epochs num_epochs"},
      {"train.micro_batch", R1_REF(train.micro_batch), "Rows per forward pass on each rank.",
       at_least(1), nullptr, 0, "per_device_train_batch_size micro_batch_size batch_size"},
      {"train.grad_accum", R1_REF(train.grad_accum), "Micro-batches per optimizer step.",
       at_least(1), nullptr, 0, "gradient_accumulation_steps"},
      {"train.warmup_steps", R1_REF(train.warmup_steps), "Steps of linear warmup from 0 to lr.",
       at_least(0)},
      {"train.schedule", R1_REF(train.schedule), "Learning-rate decay after warmup.",
       {}, nullptr, 0, "lr_scheduler_type lr_scheduler"},
      {"train.weight_decay", R1_REF(train.weight_decay), "AdamW decoupled weight decay.",
       at_least(0)},
      {"train.adam_beta1", R1_REF(train.adam_beta1), "AdamW beta1.",
       below_one(0)},
      {"train.adam_beta2", R1_REF(train.adam_beta2), "AdamW beta2.",
       below_one(0)},
      {"train.adam_eps", R1_REF(train.adam_eps), "AdamW epsilon.",
       above(0), nullptr, 0, "adam_epsilon"},
      {"train.max_grad_norm", R1_REF(train.max_grad_norm), "Clip the global grad norm; 0 = off.",
       at_least(0)},
      {"train.checkpointing", R1_REF(train.checkpointing),
       "layer = recompute layers in backward; auto = keep the last layers' activations while they fit "
       "memory_budget_gb, or 90% of the rank's share of the GPU's memory when that is 0, and recompute the rest (the CPU recomputes all); none = keep all.",
       {}, nullptr, 0, "gradient_checkpointing"},
      {"train.keep_layers", R1_REF(train.keep_layers),
       "With checkpointing = layer or auto: the last N layers keep their activations (no recompute; more memory).",
       at_least(0)},
      {"train.recompute_mlp_layers", R1_REF(train.recompute_mlp_layers),
       "With checkpointing = layer or auto: the N layers before the kept ones recompute only their MLP's gate and up "
       "(the attention keeps its activations): about half a layer's recomputation for more than half of its memory.",
       at_least(0)},
      {"train.offload_layers", R1_REF(train.offload_layers),
       "On the GPU: of the layers not recomputed whole, N (spread evenly) keep their input, residual sum and "
       "(unless they recompute their MLP) gate and up in page-locked host memory until the backward, copied "
       "while the other layers compute: less GPU memory for the same arithmetic. 0 = off.",
       at_least(0)},
      {"train.offload_recomputed_inputs", R1_REF(train.offload_recomputed_inputs),
       "On the GPU: the layers recomputed whole keep their input in page-locked host memory until the backward "
       "instead of on the device, copied while the next layers compute (one hidden-wide value per token and "
       "layer); memory_budget_gb's plan then keeps more layers."},
      {"train.offload_attention", R1_REF(train.offload_attention),
       "On the GPU, with offload_layers: those layers keep q, k, v and the attention's output in page-locked host "
       "memory too and recompute the attention from them in the backward (nothing of theirs stays on the "
       "device; more bytes over the host link)."},
      {"train.offload", R1_REF(train.offload),
       "manual = offload what offload_layers and offload_recomputed_inputs say; auto = with a memory budget "
       "(memory_budget_gb, or checkpointing = auto) on the GPU, the planner also chooses them: the plan that the "
       "host link (timed at the start) and the recomputation make fastest, within 80% of the node's memory for "
       "the page-locked buffers."},
      {"train.memory_budget_gb", R1_REF(train.memory_budget_gb),
       "With checkpointing = layer or auto: choose the kept and MLP-recomputing layers with the least recomputation that the memory estimate fits in this many GB per rank; 0 = off (layer) or the GPU's memory (auto).",
       at_least(0)},
      {"eval.every_steps", R1_REF(eval.every_steps), "Evaluate every N steps; 0 = only at the end.",
       at_least(0), nullptr, 0, "eval_steps"},
      {"eval.max_kl", R1_REF(eval.max_kl), "Stop early when KL(base || tuned) exceeds this; 0 = off.",
       at_least(0)},
      {"eval.patience", R1_REF(eval.patience),
       "Stop after this many evaluations without the held-out loss improving by eval.min_delta; the best checkpoint becomes the adapter. 0 = off.",
       at_least(0), nullptr, 0, "early_stopping_patience"},
      {"eval.min_delta", R1_REF(eval.min_delta), "Smallest held-out loss decrease that counts as an improvement (eval.patience).",
       at_least(0), nullptr, 0, "early_stopping_threshold"},
      {"eval.kl_rows", R1_REF(eval.kl_rows), "Eval rows used for the KL check.",
       at_least(1)},
      {"eval.suite", R1_REF(eval.suite), "At the end, the full evaluation (r1dist eval) into metrics.h5 /eval."},
      {"eval.prompts", R1_REF(eval.prompts), "Prompts generated from by the full evaluation.",
       {}, nullptr, kNonEmpty},
      {"eval.max_new_tokens", R1_REF(eval.max_new_tokens), "Token limit of each generation.",
       closed(1, 131072), nullptr, 0, "max_new_tokens"},
      {"eval.prompt_format", R1_REF(eval.prompt_format), "template = data.template's prompt; chat = R1 chat template.",
       {}, nullptr},
      {"eval.temperature", R1_REF(eval.temperature), "Sampling temperature; 0 = greedy (deterministic).",
       at_least(0)},
      {"eval.top_p", R1_REF(eval.top_p), "Nucleus sampling mass when temperature > 0.",
       above_to_one(0)},
      {"eval.mcq_path", R1_REF(eval.mcq_path), "Rows with options + answer_idx; empty = the held-out rows of data.path."},
      {"eval.mcq_rows", R1_REF(eval.mcq_rows), "Multiple-choice rows scored; 0 = all.",
       at_least(0)},
      {"dist.backend", R1_REF(dist.backend), "auto = nccl on CUDA, else mpi.",
       {}, nullptr},
      {"dist.timeout_s", R1_REF(dist.timeout_s), "Seconds a collective may wait before abort.",
       at_least(1)},
      {"output.dir", R1_REF(output.dir), "Run directory: logs, checkpoints, adapter.",
       {}, nullptr, kNonEmpty, "output_dir"},
      {"output.keep", R1_REF(output.keep), "Checkpoints kept; older ones are deleted.",
       at_least(1), nullptr, 0, "save_total_limit"},
      {"output.save_every", R1_REF(output.save_every), "Checkpoint every N steps; 0 = at the end.",
       at_least(0), nullptr, 0, "save_steps"},
      {"output.tensorboard", R1_REF(output.tensorboard),
       "Rank 0 also writes every metrics.h5 scalar as TensorBoard event files under output.dir/tensorboard (flushed each step).",
       {}, nullptr, 0, "report_to"},
  };
  // clang-format on
  return table;
}

#undef R1_REF

// Read-only callers use the same accessors; nothing is written through them.
Ref ref_of(const Key& k, const Config& c) { return k.ref(const_cast<Config&>(c)); }

const Key* find_key(const std::string& name) {
  for (const Key& k : keys())
    if (name == k.name) return &k;
  return nullptr;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; std::getline(in, w, sep);)
    if (!w.empty()) out.push_back(w);
  return out;
}

std::string parent_of(const std::string& p) {
  auto dot = p.rfind('.');
  return dot == std::string::npos ? "" : p.substr(0, dot);
}
std::string leaf_of(const std::string& p) { return p.substr(p.rfind('.') + 1); }
std::string join_path(const std::string& a, std::string_view b) {
  return a.empty() ? std::string(b) : a + "." + std::string(b);
}

// Distinct next path components below prefix ("" -> the section names), in table order.
std::vector<std::string> children(const std::string& prefix) {
  std::vector<std::string> out;
  for (const Key& k : keys()) {
    std::string name = k.name;
    if (!prefix.empty() && name.rfind(prefix + ".", 0) != 0) continue;
    std::string rest = prefix.empty() ? name : name.substr(prefix.size() + 1);
    std::string next = rest.substr(0, rest.find('.'));
    if (std::find(out.begin(), out.end(), next) == out.end()) out.push_back(next);
  }
  return out;
}

// Levenshtein with adjacent transpositions (optimal string alignment): "trian" -> 1.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The closest candidate, or "" when none is close enough to be a plausible typo.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  size_t limit = std::max<size_t>(2, word.size() / 3), best = limit + 1;
  std::string out;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best) best = d, out = c;
  }
  return out;
}

std::string suggest_key(const std::string& path) {
  std::string leaf = leaf_of(path);
  for (const Key& k : keys()) {
    auto names = split(k.aliases ? k.aliases : "", ' ');
    if (std::find(names.begin(), names.end(), leaf) != names.end()) return k.name;
  }
  for (const Key& k : keys())  // the same key in another section: 'train.every_steps'
    if (leaf_of(k.name) == leaf) return k.name;
  std::string near = nearest(leaf, children(parent_of(path)));
  return near.empty() ? "" : join_path(parent_of(path), near);
}

std::string did_you_mean(const std::string& s, const char* open = "'", const char* close = "'") {
  return s.empty() ? "" : std::string(" (did you mean ") + open + s + close + "?)";
}

std::string fmt_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back as v
  std::string s(buf, res.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// A TOML basic string.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n' || c == '\t') {
      out += c == '\n' ? "\\n" : "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04X", c);
      out += esc;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string render(const Ref& r) {
  return std::visit(
      [](auto p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, EnumRef>)
          return quote(p.name());
        else if constexpr (std::is_same_v<T, bool>)
          return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>)
          return fmt_float(*p);
        else if constexpr (std::is_same_v<T, std::string>)
          return quote(*p);
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (size_t i = 0; i < p->size(); ++i) out += (i ? ", " : "") + quote((*p)[i]);
          return out + "]";
        } else {
          return std::to_string(*p);
        }
      },
      r);
}

const char* type_name(const Ref& r) {
  static const char* names[] = {"bool", "int", "int", "float", "string", "string list", "string"};
  return names[r.index()];
}
const char* expected(const Ref& r) {
  static const char* names[] = {"a boolean", "an integer", "an integer", "a float",
                                "a string",  "an array of strings", "a string"};
  return names[r.index()];
}
const char* a_type(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

bool in_bounds(const Bounds& b, double x) {
  return (b.lo_open ? x > b.lo : x >= b.lo) && (b.hi_open ? x < b.hi : x <= b.hi);
}
bool unbounded(const Bounds& b) { return b.lo == -kInf && b.hi == kInf; }
std::string bounds_text(const Bounds& b) {
  auto num = [](double v) {
    return std::isfinite(v) && v == std::floor(v) ? std::to_string(int64_t(v)) : fmt_float(v);
  };
  return (b.lo_open ? "(" : "[") + num(b.lo) + ", " + num(b.hi) + (b.hi_open ? ")" : "]");
}
std::string choices_text(const std::string& choices) {
  std::string out;
  for (const auto& c : split(choices, '|')) out += (out.empty() ? "" : ", ") + c;
  return out;
}

// Where a value came from: "file:line" for the file, the whole "--set k=v" for overrides.
struct Origin {
  std::string name;
  bool is_file;
  std::string at(const toml::source_region& s) const {
    return is_file && s.begin.line ? name + ":" + std::to_string(s.begin.line) : name;
  }
};

struct Loader {
  std::string source;  // file name for messages; cfg.source_path stays "" for strings
  Config cfg;
  std::vector<std::string> problems;
  std::map<std::string, std::string> set_at;  // key -> where a valid value came from
  std::set<std::string> failed, skip;         // skip: keys an override replaces

  void problem(const std::string& where, const std::string& what) {
    problems.push_back(where + ": " + what);
  }

  // Empty when s is allowed for k, else the reason.
  std::string check_choice(const Key& k, const std::string& s, const std::string& what) {
    const std::string choices = choices_of(k.choices, k.ref(cfg));
    if (choices.empty()) return "";
    auto options = split(choices, '|');
    if (std::find(options.begin(), options.end(), s) != options.end()) return "";
    return what + " '" + s + "' is not one of " + choices_text(choices) + did_you_mean(nearest(s, options));
  }

  void assign(const Key& k, const toml::node& n, const std::string& where) {
    const std::string name = k.name;
    std::string bad;
    bool wrong_type = false;
    std::visit(
        [&](auto p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, EnumRef>) {
            auto v = n.as_string();
            if (!v) return void(wrong_type = true);
            bad = check_choice(k, v->get(), name + " =");
            if (name == "data.format" && (v->get() == "json" || v->get() == "jsonl"))
              bad = "data.format = '" + v->get() +
                    "': data.format is now the row format (auto, medical_o1, messages, sharegpt, alpaca, "
                    "prompt_completion, text); a JSON array or JSON Lines is read from the file itself (a file "
                    "whose first non-blank byte is '[' is a JSON array, else JSON Lines)\nHINT: delete this line "
                    "(or write data.format = \"medical_o1\" for Question/Complex_CoT/Response rows)";
            if (bad.empty()) {
              const auto& names = *p.names;
              p.set(p.p, int(std::find(names.begin(), names.end(), v->get()) - names.begin()));
            }
          } else if constexpr (std::is_same_v<T, bool>) {
            if (auto v = n.as_boolean())
              *p = v->get();
            else
              wrong_type = true;
          } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
            auto v = n.as_integer();
            if (!v) return void(wrong_type = true);
            int64_t x = v->get();
            bool fits = !std::is_same_v<T, int> || (x >= INT_MIN && x <= INT_MAX);
            if (fits && in_bounds(k.range, double(x)))
              *p = T(x);
            else
              bad = name + " = " + std::to_string(x) + " is out of range " + bounds_text(k.range);
          } else if constexpr (std::is_same_v<T, double>) {
            // Integers are fine where a float is expected ("alpha = 16").
            double x;
            if (auto f = n.as_floating_point())
              x = f->get();
            else if (auto i = n.as_integer())
              x = double(i->get());
            else
              return void(wrong_type = true);
            if (!std::isfinite(x))
              bad = name + " = " + fmt_float(x) + " is not a finite number";
            else if (x != 0 && (std::fabs(x) < double(FLT_MIN) || std::fabs(x) > double(FLT_MAX)))
              // The optimizer, LoRA and the losses compute in fp32: 1e-300 would become 0
              // there (an AdamW epsilon of 0 makes 0/0 = NaN adapters), 1e39 infinity.
              bad = name + " = " + fmt_float(x) + (std::fabs(x) < 1 ? " underflows" : " overflows") +
                    " fp32, which r1dist computes in: use 0 or a magnitude from 1.2e-38 to 3.4e+38";
            else if (!in_bounds(k.range, x))
              bad = name + " = " + fmt_float(x) + " is out of range " + bounds_text(k.range);
            else
              *p = x;
          } else if constexpr (std::is_same_v<T, std::string>) {
            auto v = n.as_string();
            if (!v) return void(wrong_type = true);
            bad = check_choice(k, v->get(), name + " =");
            if (bad.empty() && v->get().empty() && (k.flags & (kRequired | kNonEmpty)))
              bad = name + " must not be empty";
            if (bad.empty()) *p = v->get();
          } else {
            auto arr = n.as_array();
            if (!arr) return void(wrong_type = true);
            std::vector<std::string> out;
            for (size_t i = 0; i < arr->size() && bad.empty(); ++i) {
              auto s = (*arr)[i].as_string();
              if (!s) {
                bad = name + "[" + std::to_string(i) + "]: expected a string, got " +
                      a_type((*arr)[i]);
                break;
              }
              bad = check_choice(k, s->get(), name + " entry");
              if (bad.empty() && std::find(out.begin(), out.end(), s->get()) != out.end())
                bad = name + " entry '" + s->get() + "' is repeated";
              out.push_back(s->get());
            }
            if (bad.empty() && out.empty() && (k.flags & kNonEmpty))
              bad = name + " must not be empty";
            if (bad.empty()) *p = std::move(out);
          }
        },
        k.ref(cfg));
    if (wrong_type) bad = name + ": expected " + expected(k.ref(cfg)) + ", got " + a_type(n);
    if (bad.empty()) {
      set_at[name] = where;
      failed.erase(name);
    } else {
      failed.insert(name);
      problem(where, bad);
    }
  }

  // Walks a value at path: a key, a table of keys (section, data.fields) or a mistake.
  void apply(const std::string& path, const toml::node& n, const Origin& o,
             const toml::source_region& at) {
    const std::string where = o.at(at);
    if (const Key* k = find_key(path)) {
      if (!skip.count(path)) assign(*k, n, where);
    } else if (path.empty() || !children(path).empty()) {
      auto t = n.as_table();
      if (!t) return problem(where, path + ": expected a table, got " + a_type(n));
      for (auto&& [key, child] : *t)
        apply(join_path(path, key.str()), child, o,
              key.source().begin.line ? key.source() : child.source());
    } else if (path.find('.') == std::string::npos && n.is_table()) {
      problem(where, "unknown section '[" + path + "]'" +
                         did_you_mean(nearest(path, children("")), "'[", "]'"));
    } else {
      problem(where, "unknown key '" + path + "'" + did_you_mean(suggest_key(path)));
    }
  }

  void check_whole() {
    for (const Key& k : keys())
      if ((k.flags & kRequired) && !set_at.count(k.name) && !failed.count(k.name))
        problems.push_back(source + ": missing required key '" + k.name +
                           "' (HINT: set it in the " + "file or pass --set " + k.name + "=VALUE)");
    if (cfg.data.eval_rows != 0 && cfg.data.eval_fraction != 0)
      problem(set_at["data.eval_fraction"],
              "data.eval_rows and data.eval_fraction are mutually exclusive; set one of them to 0");
    if (cfg.train.epochs > 0 && set_at.count("train.steps"))
      problem(set_at["train.epochs"], "train.epochs and train.steps both set the length of the run (" +
                                          set_at["train.steps"] + " sets train.steps); set one of them");
    if (cfg.eval.patience > 0 && cfg.eval.every_steps == 0)
      problem(set_at["eval.patience"],
              "eval.patience counts evaluations without improvement, but with eval.every_steps = 0 the held-out "
              "loss is evaluated only at the end\nHINT: set eval.every_steps");
    for (const auto& message : recompute_key_conflicts(cfg.train)) problem(set_at["train.memory_budget_gb"], message);
    for (const auto& message : offload_key_conflicts(cfg.train)) problem(set_at["train.offload"], message);
    // Rows per step on one rank; x ranks later (trainer). 2^40 rows is far beyond any data
    // set, and keeps every product with ranks and tokens far from int64 overflow.
    if (int64_t rows = 0; __builtin_mul_overflow(cfg.train.micro_batch, cfg.train.grad_accum, &rows) ||
                          rows > (int64_t(1) << 40))
      problem(set_at.count("train.grad_accum") ? set_at["train.grad_accum"] : set_at["train.micro_batch"],
              "train.micro_batch x train.grad_accum = " + std::to_string(cfg.train.micro_batch) + " x " +
                  std::to_string(cfg.train.grad_accum) + " rows per rank and step is beyond 2^40 (" +
                  std::to_string(int64_t(1) << 40) + ")");
    if (!cfg.model.hub_id.empty() && !looks_like_hub_id(cfg.model.hub_id))
      problem(set_at["model.hub_id"], "model.hub_id '" + cfg.model.hub_id +
                                          "' is not a hub id \"owner/name\" (or it is a local path)\nHINT: write "
                                          "the id the base model has on the Hugging Face Hub, e.g. "
                                          "\"deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B\", or leave it empty");
    if (cfg.model.name.size() > 255)
      problem(set_at["model.name"], "model.name is " + std::to_string(cfg.model.name.size()) +
                                        " bytes; a display name must fit in 255 (it is stored in metrics.h5)");
  }
};

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

struct Override {
  std::string path;
  Origin origin;
  toml::table holder;  // owns the parsed value under key "v"
};

// "section.key=value": the value is TOML when it parses as one value, else literal text.
bool parse_override(const std::string& text, Override& out, std::vector<std::string>& problems) {
  out.origin = {"--set " + text, false};
  auto eq = text.find('=');
  std::string path = eq == std::string::npos ? "" : text.substr(0, eq);
  path.erase(0, path.find_first_not_of(" \t"));
  path.erase(path.find_last_not_of(" \t") + 1);
  if (path.empty()) {
    problems.push_back(out.origin.name + ": expected section.key=value");
    return false;
  }
  std::string raw = text.substr(eq + 1);
  out.path = path;
  try {
    out.holder = toml::parse("v = " + raw);
  } catch (const toml::parse_error&) {
    out.holder = toml::table{};
  }
  // A key typed as string takes the text as written: --set output.dir=2024, model.path=/x/y.
  const Key* k = find_key(path);
  Config probe;
  bool string_key = k && (std::holds_alternative<std::string*>(k->ref(probe)) ||
                          std::holds_alternative<EnumRef>(k->ref(probe)));
  const toml::node* v = out.holder.size() == 1 ? out.holder.get("v") : nullptr;
  if (!v || (string_key && !v->is_string())) out.holder = toml::table{{"v", raw}};
  return true;
}

}  // namespace

Config parse_config_string(const std::string& toml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides) {
  Loader loader;
  loader.source = source_name;
  std::vector<Override> sets(overrides.size());
  for (size_t i = 0; i < overrides.size(); ++i)
    if (parse_override(overrides[i], sets[i], loader.problems)) loader.skip.insert(sets[i].path);

  toml::table doc;
  try {
    doc = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    loader.problems.insert(loader.problems.begin(), source_name + ":" + std::to_string(b.line) +
                                                        ":" + std::to_string(b.column) + ": " +
                                                        std::string(e.description()));
    throw UsageError(join_lines(loader.problems));
  }
  loader.apply("", doc, {source_name, true}, {});
  loader.skip.clear();
  for (const auto& s : sets)
    if (!s.path.empty()) loader.apply(s.path, *s.holder.get("v"), s.origin, {});
  loader.check_whole();
  if (!loader.problems.empty()) throw UsageError(join_lines(loader.problems));
  return loader.cfg;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text, why;
  if (!try_read_file(path, &text, &why))
    throw UsageError(path + ": cannot open config file (" + why +
                     ")\nHINT: check the path; a relative one is read from the current directory");
  Config cfg = parse_config_string(text, path, overrides);
  cfg.source_path = path;
  return cfg;
}

std::string Config::to_toml(const std::string& only) const {
  std::string out, section;
  for (const Key& k : keys()) {
    std::string name = k.name;
    auto dot = name.find('.');
    if (!only.empty() && name.substr(0, dot) != only) continue;
    if (name.substr(0, dot) != section) {
      section = name.substr(0, dot);
      out += (out.empty() ? "[" : "\n[") + section + "]\n";
    }
    // With train.epochs the step count is derived: writing train.steps would set both.
    if (name == "train.steps" && train.epochs > 0) {
      out += "# train.steps: derived from train.epochs\n";
      continue;
    }
    // data.fields.* becomes the dotted key fields.question inside [data].
    out += name.substr(dot + 1) + " = " + render(ref_of(k, *this)) + "\n";
  }
  return out;
}

bool operator==(const Config& a, const Config& b) {
  for (const Key& k : keys()) {
    bool same = std::visit(
        [&](auto p) {
          if constexpr (std::is_same_v<decltype(p), EnumRef>)
            return p.get(p.p) == std::get<EnumRef>(ref_of(k, b)).get(std::get<EnumRef>(ref_of(k, b)).p);
          else
            return *p == *std::get<decltype(p)>(ref_of(k, b));
        },
        ref_of(k, a));
    if (!same) return false;
  }
  return true;
}
bool operator!=(const Config& a, const Config& b) { return !(a == b); }

std::vector<std::string> recompute_key_conflicts(const TrainConfig& train) {
  std::vector<std::string> out;
  if (train.memory_budget_gb <= 0) return out;
  for (const auto& [key, layers] : {std::pair<const char*, int64_t>{"train.keep_layers", train.keep_layers},
                                    {"train.recompute_mlp_layers", train.recompute_mlp_layers}})
    if (layers > 0)
      out.push_back(std::string("train.memory_budget_gb and ") + key +
                    " both choose what the backward recomputes; set one of them to 0");
  if (train.checkpointing == Checkpointing::none)
    out.push_back("train.memory_budget_gb chooses how many layers skip the recomputation of train.checkpointing = "
                  "\"layer\" or \"auto\"; with checkpointing = \"none\" every layer keeps its activations already");
  return out;
}

std::vector<std::string> offload_key_conflicts(const TrainConfig& train) {
  std::vector<std::string> out;
  if (train.offload != OffloadChoice::automatic) return out;
  if (train.offload_layers > 0)
    out.push_back("train.offload = \"auto\" and train.offload_layers both choose the offloaded layers; set "
                  "offload_layers = 0 or offload = \"manual\"");
  if (train.offload_attention)
    out.push_back("train.offload = \"auto\" and train.offload_attention both choose whether the attention's "
                  "activations move; leave offload_attention false or set offload = \"manual\"");
  if (train.offload_recomputed_inputs)
    out.push_back("train.offload = \"auto\" and train.offload_recomputed_inputs both choose whether the recomputed "
                  "layers' inputs move; leave offload_recomputed_inputs false or set offload = \"manual\"");
  if (train.checkpointing == Checkpointing::none ||
      (train.checkpointing == Checkpointing::layer && train.memory_budget_gb <= 0))
    out.push_back("train.offload = \"auto\" plans within a memory budget: set train.checkpointing = \"auto\" or "
                  "train.memory_budget_gb");
  return out;
}

std::vector<ConfigKeyDoc> config_key_docs() {
  const Config defaults;
  std::vector<ConfigKeyDoc> out;
  for (const Key& k : keys()) {
    std::string doc = k.doc;
    if (!unbounded(k.range)) doc += " Range " + bounds_text(k.range) + ".";
    if (const auto c = choices_of(k.choices, ref_of(k, defaults)); !c.empty())
      doc += " One of: " + choices_text(c) + ".";
    if (k.flags & kRequired) doc += " Required.";
    out.push_back({k.name, type_name(ref_of(k, defaults)), doc, render(ref_of(k, defaults))});
  }
  return out;
}

}  // namespace r1dist

namespace r1dist {

std::vector<std::string> EvalConfig::default_eval_prompts() {
  return {
      "28岁程序员，常年熬夜，头晕目眩，恶心",  // the seed experiment's standard prompt
      "65岁男性，突发胸骨后压榨样疼痛30分钟，伴大汗。最可能的诊断是什么？应立即做哪些检查？",
      "A 30-year-old woman has fatigue, pale skin and brittle nails. What is the most likely cause, and how "
      "would you confirm it?",
      "What are the first steps in managing an adult with suspected sepsis in the emergency department?",
  };
}

std::string suggest_config_key(const std::string& name) { return suggest_key(name); }

void set_config_value(Config& cfg, const std::string& key, const std::string& text, const std::string& origin) {
  Loader loader;
  loader.cfg = cfg;
  Override o;
  if (parse_override(key + "=" + text, o, loader.problems)) {
    o.origin = {origin, false};
    loader.apply(o.path, *o.holder.get("v"), o.origin, {});
  }
  if (!loader.problems.empty()) throw UsageError(join_lines(loader.problems));
  cfg = loader.cfg;
}

}  // namespace r1dist
