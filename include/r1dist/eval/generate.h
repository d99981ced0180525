// Text generation with the KV cache: greedy or sampled decoding of a batch of prompts of
// different lengths (left-padded, as HF `generate`), stopping at EOS or a token limit.
//
// Decoding per step, in HF's order: repetition penalty over the prompt and the tokens so
// far, then temperature, top-k, top-p; then the argmax (greedy) or a draw. A draw takes one
// uniform number per row from a seeded host generator (mt19937_64) and inverts the
// distribution's CDF on the device, so a seed gives the same tokens on the CPU and on a GPU
// whenever the probabilities agree.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "r1dist/model/decoder.h"
#include "r1dist/model/qwen2.h"

namespace r1dist {

struct SamplingParams {
  bool greedy = false;            // argmax; the other fields except repetition_penalty are unused
  double temperature = 0.6;       // the R1-distill generation_config.json defaults; 0 = greedy
  double top_p = 0.95;            // 1 = off
  int64_t top_k = 0;              // 0 = off
  double repetition_penalty = 1;  // 1 = off; > 1 discourages tokens already present
  uint64_t seed = 0;
  // The one rule for argmax decoding: greedy, or temperature 0 (as eval.temperature = 0).
  bool argmax() const { return greedy || temperature == 0; }
  // Throws UsageError naming the field on a value outside its range.
  void validate() const;
};

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<int64_t> stop_ids;  // a row ends after emitting one of these (e.g. EOS)
  int64_t pad_id = 0;             // left padding of shorter prompts; fills ended rows
  bool use_cache = true;          // false: every step reruns the whole sequence (for tests)
  bool cuda_graphs = true;        // on CUDA, replay the decode steps as CUDA graphs (model/decoder.h)
  // Called after each step with the row and its new token (not for ended rows).
  std::function<void(int64_t row, int64_t token)> on_token;
};

struct Generation {
  std::vector<int64_t> tokens;  // the new tokens, including the stop token when one ended it
  bool stopped_at_eos = false;  // ended by a stop id (else by max_new_tokens)
};

// Generates for every prompt (each non-empty). No gradients are recorded.
std::vector<Generation> generate(const Qwen2Model& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerateOptions& opt);

// One decoding step's choice for (B, V) logits of the last position; `seen` (B, T) are the
// ids so far (prompt + generated, pads excluded by the caller via seen_mask, (B, T) bool).
// uniforms: one number in (0, 1] per row (ignored when greedy). Returns (B) int64.
at::Tensor choose_tokens(const at::Tensor& logits, const at::Tensor& seen, const at::Tensor& seen_mask,
                         const SamplingParams& p, const std::vector<double>& uniforms);

}  // namespace r1dist
