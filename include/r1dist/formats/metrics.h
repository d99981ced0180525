// HDF5 metrics of a run (docs/METRICS_FORMAT.md): one file per run with two extendible
// compound tables, /steps and /evals, appended and flushed row by row, so that a crash keeps
// every completed row; a /counters table (integers) and an /attrs table (texts). The file
// describes itself: root attributes (format, version, writer, time), the run's config, and
// the unit and meaning of every column. The writer uses SWMR so another process
// (r1dist metrics, h5py) can read while a run writes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "r1dist/log/time_split.h"

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

// The columns of /steps and /evals, from the one table that also builds their HDF5 types:
// the writer stores each column's unit and description with its table (attributes `units`
// and `descriptions`, in field order), and docs/METRICS_FORMAT.md is generated from the file.
// Units: "1" for dimensionless numbers, "step" for step numbers.
struct MetricsColumn {
  std::string table, name, unit, description;
};
const std::vector<MetricsColumn>& metrics_columns();

// 2: root attributes, /config, per-column units, integer /counters. 1 (no `format`
// attribute): every attribute a text row of /attrs (still read: integers become counters).
constexpr int64_t kMetricsFormatVersion = 2;

// A row's values other than `step`, each under its column name, in file order: what other
// views of the metrics (the TSV of `r1dist metrics`, TensorBoard tags) show.
struct MetricValue {
  const char* name;
  double value;  // integer columns converted
};
std::vector<MetricValue> metric_values(const StepRecord& r);
std::vector<MetricValue> metric_values(const EvalRecord& r);

class MetricsWriter {
 public:
  // Creates PATH, or opens it to continue a resumed run: rows with step > resume_step
  // (written after the checkpoint being resumed) are dropped first. `config_toml` (the
  // run's full config, as checkpoints store it) is written as /config.
  MetricsWriter(const std::string& path, bool resume, int64_t resume_step, const std::string& config_toml = "");
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void append(const StepRecord& r);
  void append(const EvalRecord& r);
  // Counters (e.g. "rows_skipped", integers in /counters) and texts (e.g. "name", in
  // /attrs); a later value overwrites the row. Rows of tables, not HDF5 attributes (a SWMR
  // writer cannot create attributes).
  void set_counter(const std::string& name, int64_t value);
  void set_attr(const std::string& name, const std::string& value);
  // Every eval row of the file: those kept from before a resume, then those appended.
  const std::vector<EvalRecord>& evals() const;

 private:
  struct Impl;
  Impl* impl_;
};

// Reads a metrics file (also while a writer has it open).
struct MetricsData {
  int64_t format_version = 1;           // 1: a file without the `format` attribute
  std::string r1dist_version, created;  // "" in format 1
  std::string config_toml;              // "" in format 1
  std::vector<MetricsColumn> columns;   // as stored in the file (none in format 1)
  std::vector<StepRecord> steps;
  std::vector<EvalRecord> evals;
  std::map<std::string, int64_t> counters;
  std::map<std::string, std::string> attrs;
  std::vector<TimePart> time_split;     // /time_split, when the last process finished (else empty)
};
MetricsData read_metrics(const std::string& path);

// /time_split: where the wall time of the last `r1dist train` process of the run went (the
// table it printed at its end, log/time_split.h), one row per part: name, seconds, share
// of the total. Written once that process is done (the MetricsWriter is closed by then): the
// file is edited in memory and replaced atomically, keeping everything else in it.
void write_time_split(const std::string& path, const std::vector<TimePart>& parts);

}  // namespace r1dist
