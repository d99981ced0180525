#include "r1dist/formats/qwen2_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "r1dist/base/error.h"

namespace r1dist {

using nlohmann::json;

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
  return c;
}

// SPEC §1. The tiny preset keeps the real vocabulary so that it runs on real token ids.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {
      {"tiny", make(151936, 64, 176, 2, 4, 2, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-1.5b", make(151936, 1536, 8960, 28, 12, 2, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-7b", make(152064, 3584, 18944, 28, 28, 4, 10000.0, 1e-6, 131072)},
      {"r1-distill-qwen-14b", make(152064, 5120, 13824, 48, 40, 8, 1000000.0, 1e-5, 131072)},
  };
  return p;
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
  std::ifstream f(path);
  if (!f)
    throw UsageError("cannot open " + path +
                     "\nHINT: model.path must be a Hugging Face model directory with config.json");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    throw UsageError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw UsageError(path + ": expected a JSON object");

  std::vector<std::string> problems;
  Qwen2Config c;
  auto get_int = [&](const char* key, int64_t& out, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) problems.push_back(std::string("missing field '") + key + "'");
      return;
    }
    if (!it->is_number_integer()) {
      problems.push_back(std::string("field '") + key + "' must be an integer");
      return;
    }
    out = it->get<int64_t>();
  };
  auto get_num = [&](const json& obj, const char* key, double& out) -> bool {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return false;
    if (!it->is_number()) {
      problems.push_back(std::string("field '") + key + "' must be a number");
      return true;
    }
    out = it->get<double>();
    return true;
  };

  if (j.contains("model_type") && j["model_type"] != "qwen2")
    problems.push_back("model_type is " + j["model_type"].dump() + ", r1dist implements 'qwen2'");
  get_int("vocab_size", c.vocab_size, true);
  get_int("hidden_size", c.hidden_size, true);
  get_int("intermediate_size", c.intermediate_size, true);
  get_int("num_hidden_layers", c.num_hidden_layers, true);
  get_int("num_attention_heads", c.num_attention_heads, true);
  get_int("num_key_value_heads", c.num_key_value_heads, true);
  get_int("max_position_embeddings", c.max_position_embeddings, false);
  get_int("bos_token_id", c.bos_token_id, false);
  get_int("eos_token_id", c.eos_token_id, false);
  if (!get_num(j, "rms_norm_eps", c.rms_norm_eps)) problems.push_back("missing field 'rms_norm_eps'");

  // rope_theta: top level (transformers 4.x) or inside rope_parameters (5.x).
  bool have_theta = get_num(j, "rope_theta", c.rope_theta);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) {
      problems.push_back(std::string("field '") + key + "' must be an object");
      continue;
    }
    std::string type = it->value("rope_type", it->value("type", std::string("default")));
    if (type != "default")
      problems.push_back(std::string(key) + ".rope_type '" + type +
                         "' is not supported (only 'default' RoPE)");
    if (get_num(*it, "rope_theta", c.rope_theta)) have_theta = true;
  }
  if (!have_theta) problems.push_back("missing field 'rope_theta' (or rope_parameters.rope_theta)");

  if (j.value("use_sliding_window", false))
    problems.push_back("use_sliding_window = true is not supported");
  if (auto it = j.find("layer_types"); it != j.end() && it->is_array()) {
    for (auto& t : *it)
      if (t != "full_attention") {
        problems.push_back("layer_types contains " + t.dump() + " (only full_attention)");
        break;
      }
  }
  if (auto it = j.find("hidden_act"); it != j.end() && *it != "silu")
    problems.push_back("hidden_act " + it->dump() + " is not supported (only silu)");
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && it->is_boolean())
    c.tie_word_embeddings = it->get<bool>();
  for (const char* key : {"dtype", "torch_dtype"})
    if (auto it = j.find(key); it != j.end() && it->is_string()) {
      c.torch_dtype = it->get<std::string>();
      break;
    }
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  get_int("head_dim", c.head_dim, false);

  if (!problems.empty()) {
    std::string msg = path + ":";
    for (auto& p : problems) msg += "\n  " + p;
    throw UsageError(msg);
  }
  c.validate(path);
  return c;
}

std::string qwen2_config_json(const Qwen2Config& c) {
  json j = {
      {"architectures", {"Qwen2ForCausalLM"}},
      {"model_type", "qwen2"},
      {"attention_dropout", 0.0},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
      {"hidden_act", "silu"},
      {"hidden_size", c.hidden_size},
      {"initializer_range", 0.02},
      {"intermediate_size", c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
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
  return j.dump(2) + "\n";
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
    t.push_back({p + "input_layernorm.weight", {h}, WeightRole::norm, i, ""});
    proj("self_attn.", "q_proj", q, h, true);
    proj("self_attn.", "k_proj", kv, h, true);
    proj("self_attn.", "v_proj", kv, h, true);
    proj("self_attn.", "o_proj", h, q, false);
    t.push_back({p + "post_attention_layernorm.weight", {h}, WeightRole::norm, i, ""});
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
