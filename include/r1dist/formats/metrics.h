// HDF5 metrics of a run (docs/CHECKPOINT_FORMAT.md): one file per run with two extendible
// compound tables, /steps and /evals, appended and flushed row by row, so that a crash keeps
// every completed row; and an /attrs table of counters. The writer uses SWMR so another
// process (r1dist metrics, h5py) can read while a run writes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace r1dist {

struct StepRecord {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0;     // loss tokens in the global batch
  double step_time_s = 0, tokens_per_s = 0;  // tokens_per_s: loss tokens per second
  double mem_gb = 0;      // peak device memory (0 on CPU)
  // The global batch's real (row) tokens and the slots they took (micro-batch B x T, padding
  // included), per second; padding_share = 1 - real / slots. Files written before these
  // fields existed read as 0.
  int64_t real_tokens = 0, slot_tokens = 0;
  double real_tokens_per_s = 0, slot_tokens_per_s = 0, padding_share = 0;
};
struct EvalRecord {
  int64_t step = 0;
  double eval_loss = 0, kl = 0;  // kl: mean KL(base || tuned) per token
  int64_t eval_tokens = 0;
};

// The columns of a row other than `step`, each with its name in the file, in file order: the
// names that other views of the metrics (the TSV of `r1dist metrics`, TensorBoard tags) use.
struct MetricColumn {
  const char* name;
  double value;  // integer columns converted
};
std::vector<MetricColumn> metric_columns(const StepRecord& r);
std::vector<MetricColumn> metric_columns(const EvalRecord& r);

class MetricsWriter {
 public:
  // Creates PATH, or opens it to continue a resumed run: rows with step > resume_step
  // (written after the checkpoint being resumed) are dropped first.
  MetricsWriter(const std::string& path, bool resume, int64_t resume_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void append(const StepRecord& r);
  void append(const EvalRecord& r);
  // Counters (e.g. "rows_skipped"); overwritten each call. Stored as rows of the /attrs
  // table, not HDF5 attributes (a SWMR writer cannot create attributes).
  void set_attr(const std::string& name, int64_t value);
  void set_attr(const std::string& name, const std::string& value);

 private:
  struct Impl;
  Impl* impl_;
};

// Reads a metrics file (also while a writer has it open).
struct MetricsData {
  std::vector<StepRecord> steps;
  std::vector<EvalRecord> evals;
  std::map<std::string, std::string> attrs;  // integer attributes as decimal text
};
MetricsData read_metrics(const std::string& path);

}  // namespace r1dist
