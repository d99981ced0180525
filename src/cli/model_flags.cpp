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
  if (a.has("device")) {
    const auto d = a.str("device");
    if (d == "auto")
      cfg.model.device = DeviceChoice::automatic;
    else if (d == "cpu")
      cfg.model.device = DeviceChoice::cpu;
    else if (d == "cuda")
      cfg.model.device = DeviceChoice::cuda;
    else
      parse_device(d);  // cuda:N and bad values: checked (and refused) below by parse_device
  }
  if (a.has("dtype")) {
    const auto d = parse_compute_dtype(a.str("dtype"));
    if (d != at::kBFloat16 && d != at::kFloat) throw UsageError(a.program() + ": --dtype must be bf16 or fp32");
    cfg.model.dtype = d == at::kBFloat16 ? ComputeDtype::bf16 : ComputeDtype::fp32;
  }
  if (a.has("quant")) {
    const auto q = a.str("quant");
    if (q == "nf4")
      cfg.quant.mode = QuantMode::nf4;
    else if (q == "none")
      cfg.quant.mode = QuantMode::none;
    else
      throw UsageError(a.program() + ": --quant must be nf4 or none, got '" + q + "'");
  }
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
