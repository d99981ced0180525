// Writes a Hugging Face model directory (config.json + safetensors, sharded when larger
// than max_shard_bytes) with seeded random weights, initialised as transformers does
// (projections and embeddings N(0, 0.02), norms 1, biases 0).
#pragma once
#include <cstdint>
#include <string>

#include "r1dist/formats/qwen2_config.h"

namespace r1dist {

struct InitModelOptions {
  uint64_t seed = 0;
  std::string dtype = "bf16";               // storage dtype: bf16 or fp32
  uint64_t max_shard_bytes = 4ull << 30;    // 1.5B in bf16 stays one file, as released
  double bias_std = 0.0;                    // > 0: random biases (tests want them visible)
  // Where the random values are drawn: "cpu" (the default) or "cuda" (the GPU's Philox
  // generator: other values for the same seed, and a 14B directory in a fraction of the
  // time, bound by the disk; for benchmarks on a GPU).
  std::string device = "cpu";
};

// Returns the files written. Each tensor's values depend only on (seed, tensor name, device),
// not on sharding or order.
std::vector<std::string> write_random_model(const Qwen2Config& cfg, const std::string& dir,
                                            const InitModelOptions& opt);

}  // namespace r1dist
