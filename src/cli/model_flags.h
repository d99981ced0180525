// The flags that pick a model for generate, eval and merge, read in one place:
//   --cfg FILE [--set k=v]   a run config (model, quantisation, dtype, data, template, [eval])
//   --model DIR              the base model (overrides model.path)
//   --adapter PATH|none      a PEFT directory, a run directory (its adapter/) or an r1dist
//                            checkpoint; with --cfg the default is the run's exported adapter
//                            (output.dir/adapter) when it exists
//   --device, --dtype, --quant  without --cfg, unset ones follow what the adapter records of
//                            the base it was trained on (nf4 or none, bf16 or fp32)
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

// The device the model goes to: --device, else model.device.
at::Device device_from_flags(const Args& a, const Config& cfg);

// Loads the base model of `cfg` and attaches the adapter the flags name. An adapter that
// records its base's quantisation and dtype (an r1dist export): without --cfg, an unset
// --quant or --dtype takes the recorded value (logged, and written into `cfg`); a base loaded
// otherwise is warned about, naming both. follow_adapter = false (merge, which always folds
// into the unquantised fp32 base) skips both.
LoadedModel load_model_from_flags(const Args& a, Config& cfg, bool follow_adapter = true);

}  // namespace r1dist
