// r1dist merge: the base with its adapter folded in, as an HF model directory.
#include <ATen/ATen.h>

#include "cli/commands.h"
#include "cli/model_flags.h"
#include "r1dist/base/error.h"
#include "r1dist/log/log.h"
#include "r1dist/model/saved_adapter.h"
#include "r1dist/tensor/device.h"

namespace r1dist {

int cmd_merge(int argc, char** argv) {
  Args a("r1dist merge",
         "Fold an adapter into its base model (W + scaling * B A, computed in fp32 from the unquantised base "
         "weights) and write an HF model directory that transformers and vLLM load: safetensors in --out-dtype, "
         "sharded above --max-shard-gb, config.json, and the base's tokenizer and generation files.");
  declare_model_flags(a);
  a.option_str("out", "output directory")
      .option_str("out-dtype", "dtype of the written weights: bf16 or fp32", "bf16")
      .option_real("max-shard-gb", "largest shard in GB before the weights are split (with an index)", 5.0);
  if (!a.parse(argc, argv)) return 0;
  const auto out = a.required("out");
  Config cfg = config_from_flags(a, QuantMode::none);
  if (cfg.quant.mode != QuantMode::none)
    log::warn(
        "merge: the base is loaded unquantised (quant none): merging into NF4-rounded weights would "
        "write the rounding into the merged model");
  cfg.quant.mode = QuantMode::none;
  cfg.model.dtype = ComputeDtype::fp32;
  if (!a.has("adapter") && !a.has("cfg"))
    throw UsageError("merge: give --adapter PATH (or a --cfg whose run exported one)");
  Config out_cfg;  // --out-dtype takes model.dtype's values, read by that key's parser
  set_config_value(out_cfg, "model.dtype", a.str("out-dtype"), "--out-dtype");
  const auto dtype = to_scalar_type(out_cfg.model.dtype);
  const double gb = a.real("max-shard-gb");
  if (!(gb > 0)) throw UsageError("merge: --max-shard-gb must be > 0");
  auto lm = load_model_from_flags(a, cfg, /*follow_adapter=*/false);
  if (lm.adapter.empty()) throw UsageError("merge: no adapter to merge (--adapter none, or the run exported none)");
  save_merged_model(lm.model, cfg.model.path, out, dtype, uint64_t(gb * 1e9));
  return 0;
}

}  // namespace r1dist
