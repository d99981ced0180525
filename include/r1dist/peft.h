// The HF PEFT adapter format (shared/SPEC.md §7): adapter_config.json +
// adapter_model.safetensors, the form that PEFT, vLLM and others load.
#pragma once
#include <string>
#include <vector>

#include "r1dist/lora_linear.h"
#include "r1dist/qwen2.h"

namespace r1dist {

struct PeftAdapterConfig {
  LoraSpec spec;
  std::vector<std::string> targets;
  std::string base_model;
};

PeftAdapterConfig read_peft_config(const std::string& dir);
// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (fp32, metadata format=pt).
void save_peft_adapter(Qwen2Model& model, const std::string& dir, const PeftAdapterConfig& cfg);
// Copies the adapter tensors of DIR into the model's attached adapters: every adapter of the
// model must be in the file with the same shape, and the file may hold nothing else.
void load_peft_adapter(Qwen2Model& model, const std::string& dir);

}  // namespace r1dist
