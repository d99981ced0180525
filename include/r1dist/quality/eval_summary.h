// What `r1dist eval` measured on one model (a base, or a base with an adapter): held-out
// loss, drift from the base, multiple-choice accuracy and the generations with their
// repetition measures. Torch-free: written to and read from HDF5 by formats/eval_file.h,
// compared across versions by `r1dist report`.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "r1dist/quality/accuracy.h"
#include "r1dist/quality/repetition.h"

namespace r1dist {

struct GenerationResult {
  std::string prompt, text;   // the user's prompt, the generated text (special tokens kept)
  int64_t tokens = 0;         // generated tokens
  bool stopped_at_eos = false;  // ended at EOS (else at the token limit)
  bool think_closed = false;  // "</think>" appeared: the reasoning ended
  int64_t answer_tokens = 0;  // tokens after "</think>" (0 when it never closed)
  Repetition repetition;
};

struct EvalSummary {
  std::string model;                // base model directory
  std::string adapter;              // adapter (checkpoint or PEFT directory); "" for the base model
  std::string data;                 // data file of the held-out rows and the MCQ items
  std::string settings;             // the config's [eval] table it ran under (TOML); "" when not from a config
  int64_t rows = 0;                 // held-out rows scored
  // Mean token NLL (nats) and exp(loss); NaN when nothing was scored (no held-out rows).
  double loss = std::numeric_limits<double>::quiet_NaN(), perplexity = std::numeric_limits<double>::quiet_NaN();
  int64_t loss_tokens = 0;
  bool has_drift = false;     // an adapter was evaluated against its base
  double kl = 0;              // mean KL(base || tuned) per token
  double top1_agreement = 1;  // share of positions where base and tuned agree on the argmax
  int64_t drift_tokens = 0;
  bool has_mcq = false;
  Accuracy mcq;
  std::vector<GenerationResult> generations;

  // Any generation flagged as collapsed (quality/repetition.h).
  bool collapsed() const;
  double mean_repeated_4gram_share() const;
};

}  // namespace r1dist
