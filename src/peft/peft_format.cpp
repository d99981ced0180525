#include "r1dist/peft/peft_format.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "r1dist/base/error.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"

namespace r1dist {

using nlohmann::json;

PeftAdapterConfig read_peft_config(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  std::ifstream f(path);
  if (!f) throw UsageError("cannot open " + path + "\nHINT: point at a PEFT adapter directory");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    throw UsageError(path + ": not valid JSON: " + e.what());
  }
  std::vector<std::string> bad;
  PeftAdapterConfig c;
  if (j.value("peft_type", "") != "LORA") bad.push_back("peft_type must be \"LORA\"");
  if (!j.contains("r") || !j["r"].is_number_integer()) bad.push_back("missing integer field 'r'");
  else c.spec.r = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) bad.push_back("missing number field 'lora_alpha'");
  else c.spec.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) c.spec.dropout = j["lora_dropout"].get<double>();
  if (j.contains("use_rslora") && j["use_rslora"].is_boolean()) c.spec.rslora = j["use_rslora"].get<bool>();
  if (j.value("bias", "none") != "none") bad.push_back("bias must be \"none\"");
  if (j.value("fan_in_fan_out", false)) bad.push_back("fan_in_fan_out = true is not supported");
  const auto& t = j.contains("target_modules") ? j["target_modules"] : json();
  if (t.is_array()) {
    for (auto& m : t) c.targets.push_back(m.get<std::string>());
  } else if (t.is_string()) {
    bad.push_back("target_modules as a regex string is not supported; give a list");
  } else {
    bad.push_back("missing field 'target_modules'");
  }
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
    c.base_model = j["base_model_name_or_path"].get<std::string>();
  if (!bad.empty()) {
    std::string msg = path + ":";
    for (auto& b : bad) msg += "\n  " + b;
    throw UsageError(msg);
  }
  return c;
}

void save_peft_adapter(const LoraAdapters& adapters, const std::string& dir, const PeftAdapterConfig& cfg) {
  std::filesystem::create_directories(dir);
  json j = {{"peft_type", "LORA"},        {"task_type", "CAUSAL_LM"},
            {"r", cfg.spec.r},            {"lora_alpha", cfg.spec.alpha},
            {"lora_dropout", cfg.spec.dropout}, {"bias", "none"},
            {"target_modules", cfg.targets},    {"use_rslora", cfg.spec.rslora},
            {"base_model_name_or_path", cfg.base_model}, {"fan_in_fan_out", false},
            {"inference_mode", true},     {"modules_to_save", nullptr}};
  {
    const std::string tmp = dir + "/adapter_config.json.tmp";
    std::ofstream f(tmp);
    f << j.dump(2) << "\n";
    if (!f) throw Error("cannot write " + tmp);
    f.close();
    std::filesystem::rename(tmp, dir + "/adapter_config.json");
  }
  auto named = adapters.named_parameters();
  std::vector<st::WriteSpec> specs;
  for (auto& [name, t] : named) specs.push_back({name, st::DType::F32, t.sizes().vec()});
  st::write_file(dir + "/adapter_model.safetensors", specs, [&](size_t i, uint8_t* dst, size_t n) {
    auto t = named[i].second.detach().to(at::kCPU).contiguous();
    check(size_t(t.nbytes()) == n, "save_peft_adapter: size mismatch for " + named[i].first);
    std::memcpy(dst, t.data_ptr(), n);
  });
  write_manifest(dir, {"adapter_config.json", "adapter_model.safetensors"});
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
    param.copy_(tensor_from_bytes(*info, f.data(*info)).to(param.options()));
    used.insert(name);
  }
  for (const auto& t : f.tensors())
    if (!used.count(t.name)) throw Error(path + ": unexpected tensor '" + t.name + "' (not one of the adapters)");
}

}  // namespace r1dist
