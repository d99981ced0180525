#include "cli/model_flags.h"

#include <sys/stat.h>

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/log/log.h"
#include "r1dist/model/build_model.h"
#include "r1dist/model/saved_adapter.h"
#include "r1dist/tensor/device.h"

namespace r1dist {

void declare_model_flags(Args& a, bool adapter_flag) {
  a.option_str("cfg", "a run's TOML config: its model, quantisation, data and [eval] settings")
      .option_list("set", "override a config key: section.key=value (repeatable)")
      .option_str("model", "base model directory (HF format; overrides model.path)");
  if (adapter_flag)
    a.option_str("adapter",
                 "adapter to apply: a PEFT directory or an r1dist checkpoint (.h5), or none; with "
                 "--cfg the default is the run's output.dir/adapter when it exists");
  a.option_str("device", "auto, cpu, cuda or cuda:N (default: model.device, auto)")
      .option_str("dtype", "compute dtype: bf16 or fp32 (default: model.dtype)")
      .option_str("quant", "base weights: nf4 or none (default: quant.mode with --cfg, else none)");
}

Config config_from_flags(const Args& a, QuantMode quant_default) {
  Config cfg;
  if (a.has("cfg")) {
    cfg = load_config(a.str("cfg"), a.list("set"));
  } else {
    if (!a.list("set").empty()) throw UsageError(a.program() + ": --set needs --cfg");
    cfg.quant.mode = quant_default;
  }
  if (a.has("model")) cfg.model.path = a.str("model");
  if (cfg.model.path.empty()) throw UsageError(a.program() + ": give --model DIR or --cfg FILE");
  // The flags are config keys: each goes through that key's own parser (config.h).
  if (a.has("device") && a.str("device").rfind("cuda:", 0) != 0)  // cuda:N picks a device the key cannot name
    set_config_value(cfg, "model.device", a.str("device"), "--device");
  if (a.has("dtype")) set_config_value(cfg, "model.dtype", a.str("dtype"), "--dtype");
  if (a.has("quant")) set_config_value(cfg, "quant.mode", a.str("quant"), "--quant");
  return cfg;
}

LoadedModel load_model_from_flags(const Args& a, const Config& cfg) {
  const auto device =
      a.has("device") ? parse_device(a.str("device"), dist_group().local_rank) : resolve_device(cfg.model.device);
  select_device(device);
  std::string adapter;
  if (a.has("adapter")) {
    adapter = a.str("adapter") == "none" ? "" : a.str("adapter");
  } else if (a.has("cfg")) {
    struct stat st {};
    const auto dir = cfg.output.dir + "/adapter";
    if (::stat((dir + "/adapter_config.json").c_str(), &st) == 0) adapter = dir;
  }
  LoadedModel m{build_model(cfg, device, WithAdapters::no), device, adapter, ""};
  if (!adapter.empty()) m.adapter_desc = attach_saved_adapter(m.model, adapter, cfg.model.path);
  log::info("model ", cfg.model.path, " on ", device.str(), " (", to_string(cfg.model.dtype), ", base ",
            to_string(cfg.quant.mode), ")", adapter.empty() ? ", no adapter" : ", " + m.adapter_desc);
  return m;
}

}  // namespace r1dist
