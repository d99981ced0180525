#include "r1dist/peft/peft_format.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>
#include <set>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"

namespace r1dist {

namespace {

// PEFT's get_pattern_key: re.match(rf"(.*\.)?({key})$", module_path). PCRE2 reads Python's
// regex syntax for what such keys hold (literal names, '.', '*', classes, alternation).
bool pattern_matches(const std::string& key, const std::string& module_path, const std::string& where) {
  const std::string pattern = "(?:.*\\.)?(?:" + key + ")$";
  int err = 0;
  PCRE2_SIZE at = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_ANCHORED,
                                   &err, &at, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw UsageError(where + ": key '" + key + "' is not a regular expression r1dist can read: " +
                     reinterpret_cast<const char*>(msg));
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(module_path.data()), module_path.size(), 0, 0, md,
                             nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return rc >= 0;
}

// PEFT LoraConfig fields that change what an adapter computes, with the value that means
// "off": anything else is refused, since r1dist would silently compute something else.
struct Unsupported {
  const char* key;
  const char* why;
};
const Unsupported kUnsupported[] = {
    {"use_dora", "DoRA (weight-decomposed LoRA)"},
    {"lora_bias", "a trained bias on lora_B"},
    {"layers_to_transform", "adapters on some layers only"},
    {"layers_pattern", "adapters on some layers only"},
    {"modules_to_save", "fully trained extra modules"},
    {"trainable_token_indices", "trained token embeddings"},
    {"layer_replication", "replicated layers"},
    {"exclude_modules", "excluded modules"},
    {"target_parameters", "adapters on parameters instead of modules"},
    {"megatron_config", "Megatron parallel layers"},
    {"use_qalora", "QALoRA"},
    {"alora_invocation_tokens", "activated LoRA"},
    {"arrow_config", "Arrow routing"},
};

// A field left at PEFT's "off" value: absent, null, false, an empty list or object.
bool is_off(const JsonView& v) {
  if (!v.present()) return true;
  const Json& j = v.json();
  if (j.is_boolean()) return !j.get<bool>();
  if (j.is_array() || j.is_object() || j.is_string()) return j.empty();
  return false;
}

// The members of a pattern object in the file's order (PEFT takes the first key that
// matches; nlohmann's json sorts keys, ordered_json keeps them).
std::vector<std::string> keys_in_file_order(const std::string& text, const char* field) {
  std::vector<std::string> out;
  const auto ordered = nlohmann::ordered_json::parse(text, nullptr, false);
  if (ordered.is_object() && ordered.contains(field) && ordered[field].is_object())
    for (const auto& [k, v] : ordered[field].items()) out.push_back(k);
  return out;
}

}  // namespace

LoraSpec PeftAdapterConfig::spec_for(const std::string& module_path) const {
  LoraSpec s = spec;
  const std::string where = "adapter_config.json";
  for (const auto& [key, r] : rank_pattern)
    if (pattern_matches(key, module_path, where + " rank_pattern")) {
      s.r = r;
      break;
    }
  for (const auto& [key, alpha] : alpha_pattern)
    if (pattern_matches(key, module_path, where + " alpha_pattern")) {
      s.alpha = alpha;
      break;
    }
  return s;
}

LoraSpecFor PeftAdapterConfig::spec_for() const {
  return [c = *this](const std::string& module_path) { return c.spec_for(module_path); };
}

PeftAdapterConfig read_peft_config(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  std::string text, why;
  if (!try_read_file(path, &text, &why))
    throw UsageError("cannot open " + path + ": " + why + "\nHINT: point at a PEFT adapter directory");
  const Json doc = parse_json(text, path);
  std::vector<std::string> bad;
  const JsonView j = JsonView(doc, path).collecting(&bad);
  if (!j.is_object()) JsonView(doc, path).fail("is " + json_found(doc) + ", not an object");
  PeftAdapterConfig c;
  if (j["peft_type"].string_or("") != "LORA") bad.push_back("peft_type must be \"LORA\"");
  c.spec.r = j["r"].integer();
  if (c.spec.r <= 0 && j["r"].is_integer()) bad.push_back("\"r\" must be > 0");
  c.spec.alpha = j["lora_alpha"].number();
  c.spec.dropout = j["lora_dropout"].number_or(0.0);
  c.spec.rslora = j["use_rslora"].boolean_or(false);
  if (j["bias"].string_or("none") != "none") bad.push_back("\"bias\" = " + j["bias"].json().dump() + " is not supported (only \"none\")");
  if (j["fan_in_fan_out"].boolean_or(false)) bad.push_back("\"fan_in_fan_out\" = true is not supported");
  for (const auto& u : kUnsupported)
    if (!is_off(j[u.key]))
      bad.push_back("\"" + std::string(u.key) + "\" = " + j[u.key].json().dump(-1, ' ', false, Json::error_handler_t::replace).substr(0, 60) +
                    ": " + u.why + " is not implemented by r1dist");
  const auto targets = j["target_modules"];
  if (targets.is_string()) {
    bad.push_back("\"target_modules\" as a regular expression is not supported; give a list");
  } else {
    for (const auto& m : targets.elements()) c.targets.push_back(m.string());
  }
  for (const char* field : {"rank_pattern", "alpha_pattern"})
    if (j[field].present() && !j[field].is_object())
      bad.push_back("\"" + std::string(field) + "\" is " + json_found(j[field].json()) + ", not an object");
  for (const auto& key : keys_in_file_order(text, "rank_pattern")) {
    const int64_t r = j["rank_pattern"][key].integer();
    if (r <= 0) bad.push_back("rank_pattern \"" + key + "\" must be > 0");
    c.rank_pattern.emplace_back(key, r);
  }
  for (const auto& key : keys_in_file_order(text, "alpha_pattern"))
    c.alpha_pattern.emplace_back(key, j["alpha_pattern"][key].number());
  c.base_model = j["base_model_name_or_path"].string_or("");
  if (!bad.empty()) {
    std::string msg = path + ":";
    for (auto& b : bad) msg += "\n  " + b;
    throw UsageError(msg);
  }
  return c;
}

void save_peft_adapter(const LoraAdapters& adapters, const std::string& dir, const PeftAdapterConfig& cfg,
                       const ManifestExtra& extra, const std::string& model_card) {
  // ordered_json: the patterns keep their order (PEFT takes the first key that matches).
  nlohmann::ordered_json j = {{"peft_type", "LORA"},        {"task_type", "CAUSAL_LM"},
            {"r", cfg.spec.r},            {"lora_alpha", cfg.spec.alpha},
            {"lora_dropout", cfg.spec.dropout}, {"bias", "none"},
            {"target_modules", cfg.targets},    {"use_rslora", cfg.spec.rslora},
            {"base_model_name_or_path", cfg.base_model}, {"fan_in_fan_out", false},
            {"inference_mode", true},     {"modules_to_save", nullptr}};
  if (!cfg.rank_pattern.empty()) {
    j["rank_pattern"] = nlohmann::ordered_json::object();
    for (const auto& [k, r] : cfg.rank_pattern) j["rank_pattern"][k] = r;
  }
  if (!cfg.alpha_pattern.empty()) {
    j["alpha_pattern"] = nlohmann::ordered_json::object();
    for (const auto& [k, a] : cfg.alpha_pattern) j["alpha_pattern"][k] = a;
  }
  // Staged whole in DIR.tmp, then renamed over DIR: a crash or a full disk leaves the old
  // adapter (or none), never a partial one.
  const std::string staged = dir + ".tmp";
  remove_tree(staged);
  make_dirs(staged);
  write_file_atomic(staged + "/adapter_config.json", j.dump(2) + "\n");
  auto named = adapters.named_parameters();
  std::vector<st::WriteSpec> specs;
  for (auto& [name, t] : named) specs.push_back({name, st::DType::F32, t.sizes().vec()});
  st::write_file(staged + "/adapter_model.safetensors", specs, [&](size_t i, uint8_t* dst, size_t n) {
    auto t = named[i].second.detach().to(at::kCPU).contiguous();
    check(size_t(t.nbytes()) == n, "save_peft_adapter: size mismatch for " + named[i].first);
    std::memcpy(dst, t.data_ptr(), n);
  });
  std::vector<std::string> files = {"adapter_config.json", "adapter_model.safetensors"};
  if (!model_card.empty()) {
    write_file_atomic(staged + "/README.md", model_card);
    files.push_back("README.md");
  }
  write_manifest(staged, files, extra);
  replace_dir(staged, dir);
}

void load_peft_adapter(const LoraAdapters& adapters, const std::string& dir) {
  const std::string path = dir + "/adapter_model.safetensors";
  if (const auto problems = check_manifest(dir); !problems.empty()) {
    std::string msg = "adapter " + dir + " does not match its " + kManifestFile + ":";
    for (const auto& p : problems) msg += "\n  " + p;
    throw Error(msg);
  }
  auto f = st::File::open(path);
  std::set<std::string> used;
  at::NoGradGuard ng;
  for (auto& [name, param] : adapters.named_parameters()) {
    const auto* info = f.find(name);
    if (!info) throw Error(path + ": missing adapter tensor '" + name + "'");
    if (info->shape != param.sizes().vec())
      throw Error(path + ": tensor '" + name + "' has another shape than the model's adapter (check r)");
    const auto values = tensor_from_bytes(*info, f.data(*info));
    if (!at::isfinite(values).all().item<bool>())
      throw Error(path + ": tensor '" + name + "' holds non-finite values (NaN or inf): the adapter is unusable");
    param.copy_(values.to(param.options()));
    used.insert(name);
  }
  for (const auto& t : f.tensors())
    if (!used.count(t.name)) throw Error(path + ": unexpected tensor '" + t.name + "' (not one of the adapters)");
}

}  // namespace r1dist
