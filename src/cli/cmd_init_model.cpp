#include <chrono>
#include <fstream>
#include <sys/stat.h>

#include "r1dist/base/fs.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/model/init_model.h"
#include "r1dist/log/log.h"

namespace r1dist {

int cmd_init_model(int argc, char** argv) {
  std::string presets;
  for (const auto& p : qwen2_preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  Args a("r1dist init-model",
         "Write a Hugging Face model directory (config.json + safetensors) with seeded random weights, "
         "initialised as transformers does.");
  a.option_str("preset", "model shape: " + presets)
      .option_str("out", "output directory (created)")
      .option_uint("seed", "random seed", 0)
      .option_str("dtype", "storage dtype: bf16 or fp32", "bf16")
      .option_uint("max-shard-mb", "largest shard in MiB; larger models are sharded with an index", 4096)
      .option_real("bias-std", "std of random q/k/v biases (0: zeros, as transformers)", 0.0)
      .option_str("device", "where the random values are drawn: cpu, or cuda (other values for the same seed; "
                            "much faster for the 7B/14B presets)", "cpu")
      .option_str("tokenizer", "directory whose tokenizer.json (and tokenizer_config.json, if present) is copied "
                               "into the model directory");
  if (!a.parse(argc, argv)) return 0;
  const auto cfg = qwen2_preset(a.required("preset"));
  const auto out = a.required("out");

  InitModelOptions opt;
  opt.seed = a.u64("seed");
  opt.dtype = a.str("dtype");
  opt.max_shard_bytes = a.u64("max-shard-mb") << 20;
  opt.bias_std = a.real("bias-std");
  opt.device = a.str("device");
  if (opt.max_shard_bytes == 0) throw UsageError("init-model: --max-shard-mb must be > 0");
  const auto t0 = std::chrono::steady_clock::now();
  const auto files = write_random_model(cfg, out, opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.has("tokenizer")) {
    const auto from = a.str("tokenizer");
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      if (!is_file(from + "/" + name)) {
        if (std::string(name) == "tokenizer.json" || !is_dir(from))
          throw UsageError("init-model --tokenizer: cannot read " + from + "/" + name);
        continue;
      }
      copy_file(from + "/" + name, out + "/" + name);
    }
  }
  log::info("init-model: wrote ", out, " (", files.size(), " safetensors file",
            files.size() == 1 ? "" : "s", ") in ", s, " s");
  return 0;
}

}  // namespace r1dist
