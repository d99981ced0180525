// The HF PEFT adapter format (shared/SPEC.md §7): adapter_config.json +
// adapter_model.safetensors, the form that PEFT, vLLM and others load.
#pragma once
#include <string>
#include <vector>

#include "r1dist/peft/lora_adapters.h"
#include "r1dist/peft/lora_linear.h"

namespace r1dist {

struct PeftAdapterConfig {
  LoraSpec spec;
  std::vector<std::string> targets;
  std::string base_model;
};

PeftAdapterConfig read_peft_config(const std::string& dir);
// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (fp32, metadata format=pt).
void save_peft_adapter(const LoraAdapters& adapters, const std::string& dir, const PeftAdapterConfig& cfg);
// Copies the adapter tensors of DIR into attached adapters: every adapter must be in the
// file with the same shape, and the file may hold nothing else.
void load_peft_adapter(const LoraAdapters& adapters, const std::string& dir);

}  // namespace r1dist
