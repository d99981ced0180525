#include <chrono>
#include <fstream>
#include <sys/stat.h>

#include "r1dist/cli.h"
#include "r1dist/cli_util.h"
#include "r1dist/error.h"
#include "r1dist/init_model.h"
#include "r1dist/log.h"

namespace r1dist {

int cmd_init_model(int argc, char** argv) {
  std::string presets;
  for (const auto& p : qwen2_preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  cxxopts::Options o("r1dist init-model",
                     "Write a Hugging Face model directory (config.json + safetensors) with seeded "
                     "random weights, initialised as transformers does.");
  o.add_options()
      ("preset", "model shape: " + presets, cxxopts::value<std::string>())
      ("out", "output directory (created)", cxxopts::value<std::string>())
      ("seed", "random seed", cxxopts::value<uint64_t>()->default_value("0"))
      ("dtype", "storage dtype: bf16 or fp32", cxxopts::value<std::string>()->default_value("bf16"))
      ("max-shard-mb", "largest shard in MiB; larger models are sharded with an index",
       cxxopts::value<uint64_t>()->default_value("4096"))
      ("bias-std", "std of random q/k/v biases (0: zeros, as transformers)",
       cxxopts::value<double>()->default_value("0"))
      ("tokenizer", "directory whose tokenizer.json (and tokenizer_config.json, if present) is "
       "copied into the model directory", cxxopts::value<std::string>());
  cxxopts::ParseResult r;
  if (!parse_or_help(o, argc, argv, r)) return 0;
  const auto cfg = qwen2_preset(required(r, o, "preset"));
  const auto out = required(r, o, "out");
  if (dist_group().rank != 0) return 0;  // one writer is enough

  InitModelOptions opt;
  opt.seed = r["seed"].as<uint64_t>();
  opt.dtype = r["dtype"].as<std::string>();
  opt.max_shard_bytes = r["max-shard-mb"].as<uint64_t>() << 20;
  opt.bias_std = r["bias-std"].as<double>();
  if (opt.max_shard_bytes == 0) throw UsageError("init-model: --max-shard-mb must be > 0");
  const auto t0 = std::chrono::steady_clock::now();
  const auto files = write_random_model(cfg, out, opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.count("tokenizer")) {
    const auto from = r["tokenizer"].as<std::string>();
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      std::ifstream in(from + "/" + name, std::ios::binary);
      struct stat st {};
      if (!in) {
        if (std::string(name) == "tokenizer.json" || ::stat(from.c_str(), &st) != 0)
          throw UsageError("init-model --tokenizer: cannot read " + from + "/" + name);
        continue;
      }
      std::ofstream o(out + "/" + name, std::ios::binary | std::ios::trunc);
      o << in.rdbuf();
      check(static_cast<bool>(o), "init-model: cannot write " + out + "/" + name);
    }
  }
  log::info("init-model: wrote ", out, " (", files.size(), " safetensors file",
            files.size() == 1 ? "" : "s", ") in ", s, " s");
  return 0;
}

}  // namespace r1dist
