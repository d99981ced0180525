#include "r1dist/formats/qwen2_config.h"

#include <algorithm>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/log/log.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

struct Preset {
  const char* name;
  Qwen2Config cfg;
};

Qwen2Config make(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
                 int64_t kv, double theta, double eps, int64_t max_pos) {
  Qwen2Config c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.head_dim = hidden / heads;
  c.rope_theta = theta;
  c.rms_norm_eps = eps;
  c.max_position_embeddings = max_pos;
  c.bos_token_id = 151646;
  c.eos_token_ids = {151643};
  return c;
}

// The shapes of the three DeepSeek-R1-Distill-Qwen models (their config.json), and a tiny
// model for tests that keeps the real vocabulary so that it runs on real token ids.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {
      {"tiny", make(151936, 64, 176, 2, 4, 2, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-1.5b", make(151936, 1536, 8960, 28, 12, 2, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-7b", make(152064, 3584, 18944, 28, 28, 4, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-14b", make(152064, 5120, 13824, 48, 40, 8, 1000000.0, 1e-5, 131072)},
  };
  return p;
}

std::string not_a_token(const std::string& key, int64_t id, int64_t vocab_size) {
  return key + " " + std::to_string(id) +
         " is not a token id (0 .. vocab_size - 1 = " + std::to_string(vocab_size - 1) + ")";
}

// A token-id key of a model's JSON files (eos_token_id): one id or a list of ids (transformers
// allows both), each a row of the embedding. Problems go to `problems`; absent: no ids.
std::vector<int64_t> token_ids(const JsonView& v, int64_t vocab_size, std::vector<std::string>& problems) {
  std::vector<int64_t> ids;
  if (!v.present()) return ids;
  if (v.is_array()) {
    for (const auto& e : v.elements()) ids.push_back(e.integer());
    if (ids.empty()) problems.push_back("\"" + v.path() + "\" is an empty list");
  } else {
    ids.push_back(v.integer());
  }
  for (int64_t id : ids)
    if (id < 0 || (vocab_size > 0 && id >= vocab_size)) problems.push_back(not_a_token(v.path(), id, vocab_size));
  return ids;
}

// UsageError "PATH:" with one problem a line, when there are any.
void refuse_problems(const std::string& path, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string msg = path + ":";
  for (auto& p : problems) msg += "\n  " + p;
  throw UsageError(msg);
}

}  // namespace

void Qwen2Config::validate(const std::string& origin) const {
  std::vector<std::string> bad;
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) bad.push_back(std::string(key) + " = " + std::to_string(v) + " must be > 0");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  if (num_key_value_heads > 0 && num_attention_heads % num_key_value_heads != 0)
    bad.push_back("num_attention_heads (" + std::to_string(num_attention_heads) +
                  ") is not a multiple of num_key_value_heads (" +
                  std::to_string(num_key_value_heads) + ")");
  if (head_dim > 0 && head_dim % 2 != 0)
    bad.push_back("head_dim = " + std::to_string(head_dim) + " must be even for RoPE");
  if (!(rope_theta > 0)) bad.push_back("rope_theta must be > 0");
  if (!(rms_norm_eps > 0)) bad.push_back("rms_norm_eps must be > 0");

  if (bad.empty()) return;
  std::string msg = origin + ": invalid Qwen2 config:";
  for (auto& b : bad) msg += "\n  " + b;
  throw UsageError(msg);
}

Qwen2Config read_qwen2_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  if (!is_file(path))
    throw UsageError("cannot open " + path +
                     "\nHINT: model.path must be a Hugging Face model directory with config.json");
  const Json doc = read_json_file(path);
  std::vector<std::string> problems;
  const JsonView j = JsonView(doc, path).collecting(&problems);
  if (!j.is_object()) j.fail("is " + json_found(doc) + ", not an object");

  Qwen2Config c;
  if (j["model_type"].present() && j["model_type"].string() != "qwen2")
    problems.push_back("model_type is " + j["model_type"].json().dump() + ", r1dist implements 'qwen2'");
  // The class transformers builds from the file (when it names one) must be Qwen2's causal LM:
  // another's weights (Llama, Qwen2-MoE) can fit Qwen2's shapes yet compute something else.
  if (const auto arch = j["architectures"]; arch.present()) {
    const auto names = arch.elements();
    if (arch.is_array() &&
        std::none_of(names.begin(), names.end(), [](const JsonView& n) { return n.string() == "Qwen2ForCausalLM"; }))
      problems.push_back("architectures is " + arch.json().dump() + ", r1dist implements [\"Qwen2ForCausalLM\"]");
  }
  c.vocab_size = j["vocab_size"].integer();
  c.hidden_size = j["hidden_size"].integer();
  c.intermediate_size = j["intermediate_size"].integer();
  c.num_hidden_layers = j["num_hidden_layers"].integer();
  c.num_attention_heads = j["num_attention_heads"].integer();
  c.num_key_value_heads = j["num_key_value_heads"].integer();
  c.max_position_embeddings = j["max_position_embeddings"].opt_integer();
  c.bos_token_id = j["bos_token_id"].opt_integer();
  c.eos_token_ids = token_ids(j["eos_token_id"], c.vocab_size, problems);
  if (c.bos_token_id && (*c.bos_token_id < 0 || (c.vocab_size > 0 && *c.bos_token_id >= c.vocab_size)))
    problems.push_back(not_a_token("bos_token_id", *c.bos_token_id, c.vocab_size));
  c.rms_norm_eps = j["rms_norm_eps"].number();

  // rope_theta: top level (transformers 4.x) or inside rope_parameters (5.x).
  bool have_theta = j["rope_theta"].present();
  if (have_theta) c.rope_theta = j["rope_theta"].number();
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto rope = j[key];
    if (!rope.present()) continue;
    if (!rope.is_object()) {
      problems.push_back(std::string("\"") + key + "\" is " + json_found(rope.json()) + ", not an object");
      continue;
    }
    const auto named = rope["rope_type"].present() ? rope["rope_type"] : rope["type"];
    if (named.present()) {
      const std::string type = named.string();
      if (type != "default")
        problems.push_back(std::string(key) + ".rope_type '" + type + "' is not supported (only 'default' RoPE)");
    } else {
      // No type: plain RoPE, unless scaling keys (factor, ...) say otherwise; transformers
      // cannot tell which scaling they mean either.
      std::string scaling;
      for (const auto& [k, v] : rope.items())
        if (k != "rope_theta" && k != "partial_rotary_factor" && v.present())
          scaling += (scaling.empty() ? "" : ", ") + k;
      if (!scaling.empty())
        problems.push_back(std::string(key) + " sets " + scaling +
                           " without a rope_type: scaled RoPE is not supported (only 'default' RoPE)");
    }
    if (rope["rope_theta"].present()) {
      c.rope_theta = rope["rope_theta"].number();
      have_theta = true;
    }
  }
  if (!have_theta) problems.push_back("missing \"rope_theta\" (or rope_parameters.rope_theta)");

  if (j["use_sliding_window"].boolean_or(false)) problems.push_back("use_sliding_window = true is not supported");
  // transformers rotates only the first partial_rotary_factor x head_dim dimensions of each
  // head; r1dist rotates them all.
  for (const auto& factor : {j["partial_rotary_factor"], j["rope_parameters"]["partial_rotary_factor"]})
    if (factor.present() && factor.number() != 1.0)
      problems.push_back("partial_rotary_factor " + factor.json().dump() +
                         " is not supported (only 1: RoPE over the whole head)");
  if (const auto types = j["layer_types"]; types.present())
    for (const auto& t : types.elements())
      if (t.string() != "full_attention") {
        problems.push_back("layer_types contains " + t.json().dump() + " (only full_attention)");
        break;
      }
  if (const auto act = j["hidden_act"]; act.present() && act.string() != "silu")
    problems.push_back("hidden_act " + act.json().dump() + " is not supported (only silu)");
  c.tie_word_embeddings = j["tie_word_embeddings"].boolean_or(c.tie_word_embeddings);
  // transformers 5 writes "dtype", 4.x "torch_dtype"; a file may hold both.
  for (const char* key : {"torch_dtype", "dtype"})
    if (const auto dt = j[key]; dt.present()) c.torch_dtype = dt.string();
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  c.head_dim = j["head_dim"].integer_or(c.head_dim);

  static const char* kDtypes[] = {"float32", "float16", "bfloat16", "float64", "auto"};
  if (std::find_if(std::begin(kDtypes), std::end(kDtypes), [&](const char* d) { return c.torch_dtype == d; }) ==
      std::end(kDtypes))
    problems.push_back("torch_dtype '" + c.torch_dtype + "' is not one of float32, float16, bfloat16, float64, auto");
  refuse_problems(path, problems);
  c.validate(path);
  return c;
}

std::string qwen2_config_json(const Qwen2Config& c) {
  Json j = {
      {"architectures", {"Qwen2ForCausalLM"}},
      {"model_type", "qwen2"},
      {"attention_dropout", 0.0},
      {"hidden_act", "silu"},
      {"hidden_size", c.hidden_size},
      {"initializer_range", 0.02},
      {"intermediate_size", c.intermediate_size},
      {"max_window_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_key_value_heads", c.num_key_value_heads},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"sliding_window", nullptr},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", c.torch_dtype},
      {"use_cache", true},
      {"use_sliding_window", false},
      {"vocab_size", c.vocab_size},
  };
  if (c.head_dim != c.hidden_size / c.num_attention_heads) j["head_dim"] = c.head_dim;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (!c.eos_token_ids.empty())
    j["eos_token_id"] = c.eos_token_ids.size() == 1 ? Json(c.eos_token_ids[0]) : Json(c.eos_token_ids);
  if (c.max_position_embeddings) j["max_position_embeddings"] = *c.max_position_embeddings;
  return j.dump(2) + "\n";
}

std::string rewritten_config_json(const std::string& model_dir, const std::string& torch_dtype) {
  Json j = read_json_file(model_dir + "/config.json");
  if (!j.is_object()) JsonView(j, model_dir + "/config.json").fail("is " + json_found(j) + ", not an object");
  bool named = false;  // transformers 5 writes "dtype", 4.x "torch_dtype"
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key)) j[key] = torch_dtype, named = true;
  if (!named) j["torch_dtype"] = torch_dtype;
  j.erase("quantization_config");
  return j.dump(2) + "\n";
}

void check_token_id(int64_t top, const std::string& input, const std::string& model_dir, int64_t vocab_size,
                    const Tokenizer& tok) {
  if (top < vocab_size) return;
  const std::string token = top < tok.vocab_size() ? std::string(tok.id_to_token(int32_t(top))) : "";
  throw UsageError(model_dir + "/config.json: vocab_size is " + std::to_string(vocab_size) +
                   ", but the tokenized data holds id " + std::to_string(top) + " (" + input +
                   (token.empty() ? "" : ", token " + Json(token).dump()) + ", tokenizer " + tok.path() +
                   "): every id must be below vocab_size\nHINT: the tokenizer " + tok.path() +
                   " does not belong to this model, or adds tokens beyond its vocabulary: use the model's own "
                   "tokenizer, or leave such tokens out of the text");
}

std::vector<int64_t> generation_stop_ids(const std::string& model_dir, const Tokenizer& tok) {
  const Qwen2Config c = read_qwen2_config(model_dir);
  std::vector<int64_t> ids;
  auto add = [&](int64_t id) {
    if (id < c.vocab_size && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (const auto eos = tok.eos_id()) add(*eos);
  for (int64_t id : c.eos_token_ids) add(id);
  const std::string path = model_dir + "/generation_config.json";
  if (is_file(path)) {
    const Json doc = read_json_file(path);
    std::vector<std::string> problems;
    const JsonView j = JsonView(doc, path).collecting(&problems);
    if (!j.is_object()) j.fail("is " + json_found(doc) + ", not an object");
    for (int64_t id : token_ids(j["eos_token_id"], c.vocab_size, problems)) add(id);
    refuse_problems(path, problems);
  }
  if (ids.empty())
    log::warn("generation: no end-of-sequence id for ", model_dir, ": neither the tokenizer (", tok.path(),
              ") nor eos_token_id in config.json or generation_config.json names one, so every generation runs to "
              "its token limit\nHINT: set \"eos_token_id\" in ",
              model_dir, "/generation_config.json");
  return ids;
}

void warn_past_max_positions(const Qwen2Config& c, const std::string& model_dir, int64_t positions,
                             const std::string& what, const std::string& hint) {
  if (!c.max_position_embeddings || positions <= *c.max_position_embeddings) return;
  log::warn(what, " goes past max_position_embeddings = ", *c.max_position_embeddings, " of ", model_dir,
            "/config.json: positions beyond the length the model was trained for give unreliable output\nHINT: ", hint);
}

Qwen2Config qwen2_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return p.cfg;
  std::string known;
  for (const auto& p : presets()) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw UsageError("unknown preset '" + name + "' (known: " + known + ")");
}

std::vector<std::string> qwen2_preset_names() {
  std::vector<std::string> out;
  for (const auto& p : presets()) out.push_back(p.name);
  return out;
}

const std::vector<std::string>& projection_names() {
  static const std::vector<std::string> n = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};
  return n;
}

std::vector<WeightSpec> qwen2_weight_table(const Qwen2Config& c) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.intermediate_size;
  std::vector<WeightSpec> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, WeightRole::embedding, -1, ""});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto proj = [&](const std::string& group, const std::string& m, int64_t out, int64_t in,
                    bool bias) {
      t.push_back({p + group + m + ".weight", {out, in}, WeightRole::projection, i, m});
      if (bias) t.push_back({p + group + m + ".bias", {out}, WeightRole::bias, i, m});
    };
    t.push_back({p + "input_layernorm.weight", {h}, WeightRole::norm, i, "input_layernorm"});
    proj("self_attn.", "q_proj", q, h, true);
    proj("self_attn.", "k_proj", kv, h, true);
    proj("self_attn.", "v_proj", kv, h, true);
    proj("self_attn.", "o_proj", h, q, false);
    t.push_back({p + "post_attention_layernorm.weight", {h}, WeightRole::norm, i, "post_attention_layernorm"});
    proj("mlp.", "gate_proj", f, h, false);
    proj("mlp.", "up_proj", f, h, false);
    proj("mlp.", "down_proj", h, f, false);
  }
  t.push_back({"model.norm.weight", {h}, WeightRole::norm, -1, ""});
  if (!c.tie_word_embeddings)
    t.push_back({"lm_head.weight", {c.vocab_size, h}, WeightRole::lm_head, -1, ""});
  return t;
}

int64_t base_param_count(const Qwen2Config& c) {
  int64_t total = 0;
  for (const auto& w : qwen2_weight_table(c)) {
    int64_t n = 1;
    for (auto d : w.shape) n *= d;
    total += n;
  }
  return total;
}

int64_t lora_param_count(const Qwen2Config& c, int64_t r, const std::vector<std::string>& targets) {
  int64_t n = 0;
  for (const auto& w : qwen2_weight_table(c))
    if (w.role == WeightRole::projection &&
        std::find(targets.begin(), targets.end(), w.module) != targets.end())
      n += r * (w.shape[0] + w.shape[1]);
  return n;
}

}  // namespace r1dist
