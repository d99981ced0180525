// The flags that pick a model for generate, eval and merge, read in one place:
//   --cfg FILE [--set k=v]   a run config (model, quantisation, dtype, data, template, [eval])
//   --model DIR              the base model (overrides model.path)
//   --adapter PATH|none      a PEFT directory or an r1dist checkpoint; with --cfg the default
//                            is the run's exported adapter (output.dir/adapter) when it exists
//   --device, --dtype, --quant
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "cli/args.h"
#include "r1dist/config/config.h"
#include "r1dist/model/qwen2.h"

namespace r1dist {

void declare_model_flags(Args& a, bool adapter_flag = true);

// The config the flags describe: --cfg (with --set) or the defaults, then --model, --device,
// --dtype and --quant applied. `quant_default` applies when neither --quant nor --cfg is given.
Config config_from_flags(const Args& a, QuantMode quant_default);

struct LoadedModel {
  Qwen2Model model;
  at::Device device;
  std::string adapter;  // the adapter attached ("" = none)
  std::string adapter_desc;
};

// Loads the base model of `cfg` and attaches the adapter the flags name.
LoadedModel load_model_from_flags(const Args& a, const Config& cfg);

}  // namespace r1dist
