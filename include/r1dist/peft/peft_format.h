// The HF PEFT adapter format: adapter_config.json + adapter_model.safetensors, the form that
// PEFT, vLLM and others load (docs/CHECKPOINT_FORMAT.md, "Exported adapter").
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "r1dist/formats/manifest.h"
#include "r1dist/peft/lora_adapters.h"
#include "r1dist/peft/lora_linear.h"

namespace r1dist {

struct PeftAdapterConfig {
  LoraSpec spec;                     // r, lora_alpha, lora_dropout, use_rslora
  std::vector<std::string> targets;  // target_modules
  // PEFT's per-module overrides, in the file's order: a module whose path matches a key
  // (PEFT: re.match(r"(.*\.)?(KEY)$", path), the first key that matches wins) takes its r
  // or alpha.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::string base_model;  // base_model_name_or_path

  // The spec of the module at `module_path` (model.layers.3.self_attn.q_proj).
  LoraSpec spec_for(const std::string& module_path) const;
  LoraSpecFor spec_for() const;
};

// Reads DIR/adapter_config.json. Every setting that changes what the adapter computes and
// that r1dist does not implement (use_dora, lora_bias, layers_to_transform, modules_to_save,
// exclude_modules, ...) is refused by name; rank_pattern and alpha_pattern are honoured.
PeftAdapterConfig read_peft_config(const std::string& dir);
// Writes the adapter directory DIR atomically (a staged DIR.tmp renamed into place):
// adapter_config.json, adapter_model.safetensors (fp32, metadata format=pt) and
// r1dist_manifest.json (sizes, CRC-32s, and the `extra` fields: what the trainer records of
// the base, train/run_files.h); README.md (the model card, covered by the manifest) when
// `model_card` is not empty.
void save_peft_adapter(const LoraAdapters& adapters, const std::string& dir, const PeftAdapterConfig& cfg,
                       const ManifestExtra& extra = {}, const std::string& model_card = "");
// Copies the adapter tensors of DIR into attached adapters: every adapter must be in the
// file with the same shape and finite values, and the file may hold nothing else.
void load_peft_adapter(const LoraAdapters& adapters, const std::string& dir);

}  // namespace r1dist
