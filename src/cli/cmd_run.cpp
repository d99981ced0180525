// r1dist --cfg FILE: the main job.
#include <ATen/ATen.h>

#include <filesystem>
#include <sstream>

#include "r1dist/cli.h"
#include "r1dist/cli_util.h"
#include "r1dist/config.h"
#include "r1dist/log.h"
#include "r1dist/qwen2.h"
#include "r1dist/trainer.h"

namespace r1dist {

namespace {

// Loads the model, quantises it and attaches LoRA as the config says, then stops.
void dry_run(const Config& cfg) {
  const auto& pg = dist_group();
  const auto device = parse_device(cfg.model.device, pg.local_rank);
  const auto dtype = parse_compute_dtype(cfg.model.dtype);
  const auto mc = read_qwen2_config(cfg.model.path);
  int64_t base_params = 0;
  for (const auto& w : qwen2_weight_table(mc)) {
    int64_t n = 1;
    for (auto d : w.shape) n *= d;
    base_params += n;
  }
  log::info("model ", cfg.model.path, ": ", mc.num_hidden_layers, " layers, hidden ", mc.hidden_size,
            ", heads ", mc.num_attention_heads, "/", mc.num_key_value_heads, ", vocab ", mc.vocab_size,
            ", ", base_params, " parameters; LoRA r=", cfg.lora.r, " on ", cfg.lora.targets.size(),
            " projections: ", lora_param_count(mc, cfg.lora.r, cfg.lora.targets), " trainable");
  LoadOptions load;
  load.quant = cfg.quant.mode;
  load.double_quant = cfg.quant.double_quant;
  auto model = Qwen2Model::load(cfg.model.path, dtype, device, load);
  model.attach_lora(LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora}, cfg.lora.targets,
                    static_cast<uint64_t>(cfg.train.seed));
  log::info("loaded on ", device.str(), " in ", c10::toString(dtype), ", base ", cfg.quant.mode,
            ", ", model.lora_flat().numel(), " adapter parameters in one flat buffer");

  log::info("dry run: config and model are valid; stopping before training");
}

}  // namespace

int cmd_run(int argc, char** argv) {
  cxxopts::Options o("r1dist", "Run the job a TOML config describes.");
  o.add_options()
      ("cfg", "TOML config file", cxxopts::value<std::string>())
      ("set", "override a config key: section.key=value (repeatable; validated like the file)",
       cxxopts::value<std::vector<std::string>>())
      ("resume", "continue from a checkpoint: auto (the newest valid one in output.dir; a fresh "
       "start when there is none) or a checkpoint path", cxxopts::value<std::string>())
      ("stop-after", "stop after step N with a checkpoint (for time-limited jobs; --resume "
       "continues with the same schedule)", cxxopts::value<int64_t>())
      ("dry-run", "validate the config and load the model, then stop")
      ("log-all-ranks", "print every rank's log lines on the terminal, not only rank 0's");
  cxxopts::ParseResult r;
  if (!parse_or_help(o, argc, argv, r)) return 0;
  const auto& pg = dist_group();
  const auto path = required(r, o, "cfg");
  const auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const Config cfg = load_config(path, sets);

  log::set_rank(pg.rank, pg.world, r.count("log-all-ranks") > 0);
  std::error_code ec;
  std::filesystem::create_directories(cfg.output.dir, ec);
  if (ec) throw Error("cannot create output.dir " + cfg.output.dir + ": " + ec.message());
  log::add_file(cfg.output.dir + "/run.log");
  log::info("r1dist ", R1DIST_VERSION, ": ", path, ", world size ", pg.world);
  log::info("config (defaults filled in):\n", cfg.to_toml());

  if (r.count("dry-run")) {
    dry_run(cfg);
    return 0;
  }
  TrainOptions opt;
  opt.config_path = path;
  opt.resume = r.count("resume") ? r["resume"].as<std::string>() : "";
  if (r.count("stop-after")) {
    opt.stop_after = r["stop-after"].as<int64_t>();
    if (opt.stop_after <= 0) throw UsageError("--stop-after must be a step number > 0");
  }
  train(cfg, opt);
  return 0;
}

int cmd_config(int argc, char** argv) {
  cxxopts::Options o("r1dist config",
                     "Print a config with every default filled in (after --set overrides), or "
                     "list every key with its type, default and meaning.");
  o.add_options()
      ("cfg", "TOML config file", cxxopts::value<std::string>())
      ("set", "override: section.key=value (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("keys", "list every known key");
  cxxopts::ParseResult r;
  if (!parse_or_help(o, argc, argv, r)) return 0;
  if (dist_group().rank != 0) return 0;
  if (r.count("keys")) {
    for (const auto& k : config_key_docs())
      std::printf("%-24s %-8s %-14s %s\n", k.key.c_str(), k.type.c_str(), k.default_value.c_str(),
                  k.doc.c_str());
    return 0;
  }
  const auto sets = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  std::cout << load_config(required(r, o, "cfg"), sets).to_toml();
  return 0;
}

}  // namespace r1dist
