// The training-data pipeline (shared/SPEC.md §4): medical-o1 rows from JSON or JSONL ->
// selection and a held-out split -> prompt template -> token ids + labels -> one global
// batch order from the seed, sliced per rank. Nothing here depends on the world size except
// the final slice, so global step k holds the same rows for 1, 2 or 8 ranks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "r1dist/config.h"
#include "r1dist/error.h"

namespace r1dist {

class Tokenizer;

// Bad input in a data file; the message names the file and the line (JSONL) or row (JSON).
struct DataError : Error {
  using Error::Error;
};

struct Row {
  int64_t index = 0;  // position in the file (0-based), the id recorded in run metadata
  std::string question, cot, response;
};

struct LoadReport {
  int64_t rows_in_file = 0;  // rows parsed, including skipped ones
  int64_t skipped = 0;       // bad rows skipped (data.on_bad_row = "skip")
  // One line per skipped row: "FILE:LINE: why" (JSONL) or "FILE: row N (line L): why"
  // (JSON array; N = Row::index).
  std::vector<std::string> skip_reasons;
};

// Reads every row of data.path (data.format: auto picks by extension, .jsonl = JSONL).
// Bad rows (missing field, not a string, empty string, invalid UTF-8, over 1 MiB of text)
// throw DataError or are skipped and counted, per data.on_bad_row; a malformed, truncated
// or empty file always throws DataError with the line.
std::vector<Row> load_rows(const DataConfig& cfg, LoadReport* report = nullptr);

// Which loaded rows (indices into the load_rows vector) train and which are held out.
// Train and eval never overlap; data.n_samples = 0 means every row. Throws UsageError when
// more rows are requested than exist.
struct Split {
  std::vector<int64_t> train, eval;
};
Split select_rows(int64_t n_rows, const DataConfig& cfg, uint64_t seed);

// The prompt template: named placeholders {question}, {cot}, {response}; "{{" and "}}"
// are literal braces. The built-in default follows SPEC §4's structure in our own words.
// The text up to and including the first "<think>" after {question} is the prompt (what
// inference feeds the model); the rest is the response. EOS is appended by build_dataset.
struct PromptTemplate {
  std::string text;
  static const std::string& default_text();
  // Throws UsageError on an unknown placeholder or a template without {question}.
  static PromptTemplate parse(const std::string& text);
  std::string render(const Row& row) const;  // full training text (without BOS/EOS)
  std::string render_prompt(const std::string& question) const;  // inference form
  // render() split at the prompt/response boundary: prompt + response == render(row), and
  // prompt == render_prompt(row.question).
  struct Parts {
    std::string prompt, response;
  };
  Parts render_parts(const Row& row) const;
};

// One tokenized training row. labels[i] is the id to predict at position i (the model
// shifts internally, HF convention: labels == ids except -100 where no loss is taken).
struct Example {
  int64_t row = 0;            // Row::index
  std::vector<int32_t> ids;   // BOS + tokens + EOS (truncated to max_seq_len)
  std::vector<int32_t> labels;
  int64_t prompt_tokens = 0;  // tokens (BOS included) before the first response token
};

struct Dataset {
  std::vector<Example> train, eval;
  LoadReport load;
  int64_t truncated = 0, dropped = 0;  // over max_seq_len (data.overlong)
  // Rows whose full-text ids did not start with the prompt's ids (a BPE merge across the
  // boundary); they were tokenized as prompt + response separately. 0 for the default template.
  int64_t split_encoded = 0;
  std::string fingerprint;             // hex: data file + tokenizer + template + settings
  bool from_cache = false;
};

// Loads, selects, renders and tokenizes (data.threads threads). When cache_dir is not
// empty the tokenized result is cached there, keyed by the fingerprint, and reused.
Dataset build_dataset(const DataConfig& cfg, const Tokenizer& tok, uint64_t seed,
                      const std::string& cache_dir = "");

// The global batch order. The stream of training rows is one seeded permutation of the
// train examples per epoch, concatenated; global step k takes stream positions
// [k*G, (k+1)*G) where G = micro_batch * grad_accum * world. With group_by_length, each
// window of 64 global batches (counted from the epoch's start) is sorted by length and its
// full batches shuffled (seeded). When n is not a multiple of G, a step spans two epochs.
// A pure function of (lengths, seed, G, group_by_length): resuming needs only the step.
class BatchPlan {
 public:
  BatchPlan(std::vector<int64_t> lengths, uint64_t seed, int64_t global_batch, bool group_by_length);
  int64_t global_batch() const { return global_batch_; }
  int64_t steps_per_epoch() const;  // ceil(n / G)
  // Example indices (into Dataset::train) of global step `step`, in order; size G.
  std::vector<int64_t> step_rows(int64_t step) const;
  // Rank `rank`'s micro-batches of global step `step`: grad_accum lists of micro_batch
  // indices. Rank r takes the contiguous slice [r*m*a, (r+1)*m*a) of step_rows(step).
  std::vector<std::vector<int64_t>> rank_micro_batches(int64_t step, int rank, int world,
                                                       int64_t micro_batch, int64_t grad_accum) const;

 private:
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  std::vector<int64_t> lengths_;
  uint64_t seed_;
  int64_t global_batch_;
  bool group_;
};

// A padded micro-batch as plain vectors (row-major B x T); the trainer makes tensors.
// Right padding with pad_id and label -100, so causal attention needs no mask.
struct Collated {
  int64_t batch = 0, seq = 0;
  std::vector<int64_t> ids, labels;
  int64_t loss_tokens = 0;  // labels != -100 after the shift (positions 1..T-1)
  int64_t tokens = 0;       // real (non-pad) tokens
};
Collated collate(const std::vector<const Example*>& rows, int32_t pad_id);

}  // namespace r1dist
