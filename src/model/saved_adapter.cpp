#include "r1dist/model/saved_adapter.h"

#include <cstring>
#include <fstream>
#include <map>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/config/config.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/log/log.h"
#include "r1dist/log/meter.h"
#include "r1dist/peft/peft_format.h"
#include "r1dist/tensor/bytes.h"

namespace r1dist {

namespace {

// The adapter was trained on weights with fingerprint `recorded` ("" = not recorded).
void check_base(const std::string& recorded, const std::string& adapter, const std::string& base_dir) {
  if (recorded.empty()) return;
  const auto now = st::weights_fingerprint(st::Checkpoint::open_dir(base_dir));
  if (now != recorded)
    log::warn("adapter ", adapter, " was trained on base weights with fingerprint ", recorded, ", but ", base_dir,
              " has ", now, ": another model with the same config.json (other weights, another fine-tune); the "
              "results describe this combination, not the trained one");
}

std::string attach_checkpoint(Qwen2Model& model, const std::string& path, const std::string& base_dir) {
  const auto s = read_checkpoint(path);
  if (auto it = s.extra.find("weights_fingerprint"); it != s.extra.end()) check_base(it->second, path, base_dir);
  const auto cfg = parse_config_string(s.config_toml, path + " (its config)");
  model.attach_lora(LoraSpec{cfg.lora.r, cfg.lora.alpha, 0.0, cfg.lora.rslora}, cfg.lora.targets, 0);
  const auto params = model.lora().named_parameters();
  check(params.size() == s.adapters.size(), path + ": " + std::to_string(s.adapters.size()) +
                                                " adapter tensors, the model takes " + std::to_string(params.size()));
  at::NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, t] = params[i];
    const auto& a = s.adapters[i];
    check(a.name == name && int64_t(a.data.size()) == t.numel(),
          path + ": adapter " + a.name + " does not fit the model's " + name);
    t.copy_(at::from_blob(const_cast<float*>(a.data.data()), t.sizes(), at::kFloat));
  }
  return "checkpoint " + path + " (step " + std::to_string(s.step) + ", r " + std::to_string(cfg.lora.r) + ", alpha " +
         std::to_string(cfg.lora.alpha) + ", " + std::to_string(cfg.lora.targets.size()) + " targets)";
}

std::string attach_peft(Qwen2Model& model, const std::string& dir, const std::string& base_dir) {
  auto pc = read_peft_config(dir);
  pc.spec.dropout = 0.0;  // inference
  model.attach_lora(pc.spec_for(), pc.targets, 0);
  load_peft_adapter(model.lora(), dir);
  ManifestExtra extra;
  check_manifest(dir, nullptr, &extra);
  check_base(extra["base_fingerprint"], dir, base_dir);
  const bool patterns = !pc.rank_pattern.empty() || !pc.alpha_pattern.empty();
  return "PEFT adapter " + dir + " (r " + std::to_string(pc.spec.r) + ", alpha " + std::to_string(pc.spec.alpha) +
         (patterns ? " with per-module rank_pattern/alpha_pattern" : "") + ", " + std::to_string(pc.targets.size()) +
         " targets)";
}

}  // namespace

std::string attach_saved_adapter(Qwen2Model& model, const std::string& path, const std::string& base_dir) {
  check(!model.lora().attached(), "attach_saved_adapter: the model already has adapters");
  if (is_dir(path)) {
    if (!is_file(path + "/adapter_config.json"))
      throw UsageError("adapter " + path + " is a directory without adapter_config.json (not a PEFT adapter)");
    return attach_peft(model, path, base_dir);
  }
  if (is_file(path)) return attach_checkpoint(model, path, base_dir);
  throw UsageError("adapter " + path + " does not exist (give a PEFT adapter directory or an r1dist checkpoint .h5)");
}

MergedWeights::MergedWeights(Qwen2Model& model) : weights_(model.named_weights()) {
  // Every projection under its weight name, adapter or not.
  for (const auto& ref : model.projections(projection_names())) proj_[ref.module_path + ".weight"] = ref.layer;
}

std::vector<int64_t> MergedWeights::shape(size_t i) const {
  auto it = proj_.find(name(i));
  return it != proj_.end() ? std::vector<int64_t>{it->second->out_features(), it->second->in_features()}
                           : weights_[i].second->sizes().vec();
}

at::Tensor MergedWeights::fp32(size_t i) {
  at::NoGradGuard ng;
  at::Tensor w;
  if (auto it = proj_.find(name(i)); it != proj_.end()) {
    const LoraLinear& l = *it->second;
    w = l.base_weight(at::kFloat);
    if (l.has_adapter()) {
      w = w + l.scaling * at::matmul(l.lora_B.to(at::kFloat), l.lora_A.to(at::kFloat));
      ++merged_;
    }
  } else {
    w = *weights_[i].second;
  }
  return w.to(at::kCPU, at::kFloat).contiguous();
}

AdapterBase recorded_adapter_base(const std::string& path) {
  AdapterBase b;
  if (!is_dir(path) || !is_file(path + "/" + kManifestFile)) return b;
  ManifestExtra extra;
  check_manifest(path, nullptr, &extra);
  b.quant = extra["base_quant"];
  b.dtype = extra["base_dtype"];
  return b;
}

std::vector<std::string> save_merged_model(Qwen2Model& model, const std::string& base_dir, const std::string& out_dir,
                                           at::ScalarType dtype, uint64_t max_shard_bytes) {
  check(dtype == at::kBFloat16 || dtype == at::kFloat, "merge: the output dtype must be bf16 or fp32");
  MergedWeights weights(model);
  std::vector<st::WriteSpec> specs;
  for (size_t i = 0; i < weights.size(); ++i) specs.push_back({weights.name(i), to_st_dtype(dtype), weights.shape(i)});
  log::Meter meter("merge: writing " + out_dir, int64_t(weights.size()), "tensors");
  auto fill = [&](size_t i, uint8_t* dst, size_t nbytes) {
    meter.advance();
    const at::Tensor w = weights.fp32(i).to(dtype).contiguous();
    check(size_t(w.nbytes()) == nbytes, "merge: size mismatch for " + weights.name(i));
    std::memcpy(dst, w.data_ptr(), nbytes);
  };
  auto files = st::write_model_dir(out_dir, specs, fill, max_shard_bytes);
  meter.done();
  write_file_atomic(out_dir + "/config.json",
                    rewritten_config_json(base_dir, dtype == at::kBFloat16 ? "bfloat16" : "float32"));
  files.push_back(out_dir + "/config.json");
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    const std::string from = base_dir + "/" + name;
    if (!is_file(from)) continue;
    copy_file(from, out_dir + "/" + name);
    files.push_back(out_dir + "/" + name);
  }
  log::info("merge: ", weights.merged(), " adapters folded into their base weights; ", files.size(), " files in ", out_dir);
  return files;
}

}  // namespace r1dist
