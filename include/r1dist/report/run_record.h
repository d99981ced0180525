// What a run directory holds for a report: run.json (name, model, the training settings),
// metrics.h5 (/steps, /evals) and, when `r1dist eval` or eval.suite ran, its /eval group.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "r1dist/formats/metrics.h"
#include "r1dist/quality/eval_summary.h"

namespace r1dist {

// A numeric training setting recorded in run.json that a sweep may vary (src/train/run_files.cpp
// writes them): the report shows and plots those that differ among its tuned runs.
struct SettingKey {
  const char* key;    // run.json key
  const char* label;  // column header and axis label
  bool log_scale;     // plotted on a log axis (learning rates)
};
// lr, steps, lora_r, lora_alpha, lora_dropout, global_batch, warmup_steps, weight_decay,
// max_seq_len, n_samples, in this order.
const std::vector<SettingKey>& setting_keys();

struct RunRecord {
  std::string dir, name, model_path, model_hash;
  std::string weights_fingerprint;  // "" in run.json files written before it was recorded
  bool base = false;  // train.steps = 0: the untouched model
  double lr = 0;
  int64_t steps = 0;
  // The settings of setting_keys() that run.json records (a file written before a key
  // existed simply lacks it).
  std::map<std::string, double> settings;
  MetricsData metrics;
  std::optional<EvalSummary> eval;
  std::vector<int64_t> eval_rows;  // run.json eval_row_ids: the held-out rows its figures cover
  std::string data_path;           // run.json data_path
  // Why a fine-tune is not finished ("" when it is): its steps not all done and no early stop
  // recorded, or no complete adapter exported at its last step. Such a run is never recommended.
  std::string incomplete;
  std::string stop_reason;  // metrics.h5 stop_reason: an early stop (eval.patience, eval.max_kl)

  // The held-out loss and KL to report: /eval when present, else the last /evals row
  // (NaN when neither exists).
  double loss() const;
  double kl() const;
  // settings[key], NaN when not recorded.
  double setting(const std::string& key) const;
};

// Throws UsageError naming the directory and the missing or unreadable file.
RunRecord read_run(const std::string& dir);

// Whether `run` can be compared with `base`: its figures cover the same held-out rows of the
// same data file (runs of another train.seed or data settings hold out other rows).
bool same_held_out(const RunRecord& run, const RunRecord& base);

}  // namespace r1dist
