#include "r1dist/model/build_model.h"

#include "r1dist/tensor/device.h"

namespace r1dist {

Qwen2Model build_model(const Config& cfg, const at::Device& device, WithAdapters adapters) {
  LoadOptions load;
  load.quant = cfg.quant.mode;
  load.double_quant = cfg.quant.double_quant;
  auto model = Qwen2Model::load(cfg.model.path, to_scalar_type(cfg.model.dtype), device, load);
  if (adapters == WithAdapters::yes)
    model.attach_lora(LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora}, cfg.lora.targets,
                      uint64_t(cfg.train.seed));
  return model;
}

}  // namespace r1dist
