// Adapters saved on disk, put to use: attached to a loaded base model for evaluation and
// generation, or merged into the base weights and written as a plain HF model directory.
// Two sources: a PEFT directory (adapter_config.json + adapter_model.safetensors, from
// r1dist or any PEFT trainer) and an r1dist checkpoint (.h5: its config gives r, alpha and
// the targets).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "r1dist/model/qwen2.h"

namespace r1dist {

// Attaches the adapter at `path` to a model without adapters, loaded from `base_dir`. Returns
// a one-line description ("PEFT adapter DIR (r 16, alpha 16, 7 targets)"). Throws UsageError
// naming the path on a missing or unreadable adapter, and Error on one that does not fit the
// model or holds non-finite values. Warns when the adapter records the fingerprint of other
// base weights than base_dir's (trained on another model with the same config.json).
std::string attach_saved_adapter(Qwen2Model& model, const std::string& path, const std::string& base_dir);

// The weights of `model` with every adapter folded into its base weight (W + scaling * B A,
// in fp32), one at a time, in the order of named_weights (the weight table): merge writes
// them as safetensors, export as GGUF.
class MergedWeights {
 public:
  explicit MergedWeights(Qwen2Model& model);
  size_t size() const { return weights_.size(); }
  const std::string& name(size_t i) const { return weights_[i].first; }
  std::vector<int64_t> shape(size_t i) const;
  // Weight i in fp32 on the CPU, contiguous.
  at::Tensor fp32(size_t i);
  int64_t merged() const { return merged_; }  // adapters folded in so far

 private:
  std::vector<std::pair<std::string, at::Tensor*>> weights_;
  std::map<std::string, const LoraLinear*> proj_;
  int64_t merged_ = 0;
};

// How the base was loaded when the adapter at `path` was trained, as its manifest records it
// (base_quant: nf4|none, base_dtype: bf16|fp32); empty fields where nothing is recorded (a
// checkpoint, an adapter of another trainer or of an older r1dist).
struct AdapterBase {
  std::string quant, dtype;
};
AdapterBase recorded_adapter_base(const std::string& path);

// Writes `model` with every adapter folded into its base weight (W + scaling * B A, in fp32,
// then cast to `dtype`) as an HF model directory: base_dir's config.json with its dtype
// changed (rewritten_config_json), safetensors sharded above max_shard_bytes, and the
// tokenizer and generation files of `base_dir`.
// Returns the files written.
std::vector<std::string> save_merged_model(Qwen2Model& model, const std::string& base_dir, const std::string& out_dir,
                                           at::ScalarType dtype, uint64_t max_shard_bytes = 5ull << 30);

}  // namespace r1dist
