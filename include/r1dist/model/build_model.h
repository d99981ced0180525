// The model a config describes, built in one place for every command that needs one (the
// training run, its dry run, score, and evaluation): HF weights from model.path in
// model.dtype on `device`, projections quantised as quant.* says, and LoRA adapters as
// lora.* says, seeded by train.seed.
#pragma once
#include <ATen/ATen.h>

#include "r1dist/config/config.h"
#include "r1dist/model/qwen2.h"

namespace r1dist {

enum class WithAdapters { yes, no };

Qwen2Model build_model(const Config& cfg, const at::Device& device, WithAdapters adapters = WithAdapters::yes);

}  // namespace r1dist
