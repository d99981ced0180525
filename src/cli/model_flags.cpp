#include "cli/model_flags.h"

#include <sys/stat.h>

#include "cli/run_paths.h"
#include "r1dist/base/error.h"
#include "r1dist/formats/manifest.h"
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
                 "adapter to apply: a PEFT directory, a run directory (its adapter/) or an r1dist checkpoint "
                 "(.h5), or none; with --cfg the default is the run's output.dir/adapter when it exists");
  a.option_str("device", "auto, cpu, cuda or cuda:N (default: model.device, auto)")
      .option_str("dtype", "compute dtype: bf16 or fp32 (default: model.dtype with --cfg, else the adapter's "
                           "recorded base dtype, else bf16)")
      .option_str("quant", "base weights: nf4 or none (default: quant.mode with --cfg, else the adapter's recorded "
                           "base quantisation, else none)");
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

namespace {

// Follows or checks what the adapter records of its base (see model_flags.h).
void match_adapter_base(const Args& a, Config& cfg, const std::string& adapter) {
  const auto rec = recorded_adapter_base(adapter);
  if (rec.quant.empty() && rec.dtype.empty()) return;
  std::string followed;
  auto take = [&](const char* flag, const char* key, const std::string& value) {
    if (value.empty() || a.has("cfg") || a.has(flag)) return;
    set_config_value(cfg, key, value, std::string("the adapter's ") + kManifestFile);
    followed += std::string(followed.empty() ? "" : " and ") + "--" + flag + " " + value;
  };
  take("quant", "quant.mode", rec.quant);
  take("dtype", "model.dtype", rec.dtype);
  if (!followed.empty())
    log::info("adapter ", adapter, " was trained on a base with quant ", rec.quant.empty() ? "?" : rec.quant,
              ", dtype ", rec.dtype.empty() ? "?" : rec.dtype, ": loading the base with ", followed,
              " (give --quant/--dtype to choose otherwise)");
  const bool quant_differs = !rec.quant.empty() && rec.quant != to_string(cfg.quant.mode);
  const bool dtype_differs = !rec.dtype.empty() && rec.dtype != to_string(cfg.model.dtype);
  if (quant_differs || dtype_differs)
    log::warn("adapter ", adapter, " was trained on a base with quant ", rec.quant.empty() ? "?" : rec.quant,
              ", dtype ", rec.dtype.empty() ? "?" : rec.dtype, ", but this one is loaded with quant ",
              to_string(cfg.quant.mode), ", dtype ", to_string(cfg.model.dtype),
              ": the results describe this combination, not the trained one\nHINT: --quant ",
              rec.quant.empty() ? to_string(cfg.quant.mode) : rec.quant, " --dtype ",
              rec.dtype.empty() ? to_string(cfg.model.dtype) : rec.dtype, " loads the base as it was trained");
}

}  // namespace

at::Device device_from_flags(const Args& a, const Config& cfg) {
  return a.has("device") ? parse_device(a.str("device"), dist_group().local_rank) : resolve_device(cfg.model.device);
}

LoadedModel load_model_from_flags(const Args& a, Config& cfg, bool follow_adapter) {
  const auto device = device_from_flags(a, cfg);
  select_device(device);
  std::string adapter;
  if (a.has("adapter")) {
    adapter = a.str("adapter") == "none" ? "" : adapter_arg(a.str("adapter"));
  } else if (a.has("cfg")) {
    struct stat st {};
    const auto dir = cfg.output.dir + "/adapter";
    if (::stat((dir + "/adapter_config.json").c_str(), &st) == 0) adapter = dir;
  }
  if (!adapter.empty() && follow_adapter) match_adapter_base(a, cfg, adapter);
  LoadedModel m{build_model(cfg, device, WithAdapters::no), device, adapter, ""};
  if (!adapter.empty()) m.adapter_desc = attach_saved_adapter(m.model, adapter, cfg.model.path);
  log::info("model ", cfg.model.path, " on ", device.str(), " (", to_string(cfg.model.dtype), ", base ",
            to_string(cfg.quant.mode), ")", adapter.empty() ? ", no adapter" : ", " + m.adapter_desc);
  return m;
}

}  // namespace r1dist
