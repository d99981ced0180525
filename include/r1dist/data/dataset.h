// Tokenized training and held-out rows: load -> select -> template -> token ids + labels,
// on data.threads threads, cached on disk by a fingerprint of everything that shapes them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/data/loader.h"

namespace r1dist {

class Tokenizer;

// One tokenized training row. labels[i] is the id to predict at position i (the model
// shifts internally, HF convention: labels == ids except -100 where no loss is taken).
struct Example {
  int64_t row = 0;            // Row::index
  std::vector<int32_t> ids;   // BOS + tokens + EOS (truncated to max_seq_len)
  std::vector<int32_t> labels;
  int64_t prompt_tokens = 0;  // tokens (BOS included) before the first response token
};

// Labels that the loss sees (positions 1..T-1 with a label other than -100).
int64_t loss_tokens(const Example& e);
// Each example's token count, in order (what BatchPlan and packing take).
std::vector<int64_t> example_lengths(const std::vector<Example>& examples);

struct Dataset {
  std::vector<Example> train, eval;
  LoadReport load;
  int64_t truncated = 0, dropped = 0;  // over max_seq_len (data.overlong)
  // Rows left without a loss token after truncation (loss on the responses only, and the prompt
  // fills data.max_seq_len): they teach nothing and are dropped, counted here.
  int64_t without_loss = 0;
  // Rows whose full-text ids did not start with the prompt's ids (a BPE merge across the
  // boundary); they were tokenized as prompt + response separately. 0 for the default template.
  int64_t split_encoded = 0;
  std::string fingerprint;             // hex: data file + tokenizer + template + settings (the cache's key)
  // hex: the tokenized rows themselves (each split's row ids, token ids, labels, in order): a
  // run's identity, so that a resume is refused only when the rows it trains on differ.
  std::string rows_fingerprint;
  bool from_cache = false;
};

// Loads, selects, renders and tokenizes (data.threads threads). When cache_dir is not
// empty the tokenized result is cached there, keyed by the fingerprint, and reused.
Dataset build_dataset(const DataConfig& cfg, const Tokenizer& tok, uint64_t seed,
                      const std::string& cache_dir = "");

}  // namespace r1dist
