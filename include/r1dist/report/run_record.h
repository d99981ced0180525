// What a run directory holds for a report: run.json (name, model, lr, steps), metrics.h5
// (/steps, /evals) and, when `r1dist eval` or eval.suite ran, its /eval group.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "r1dist/formats/metrics.h"
#include "r1dist/quality/eval_summary.h"

namespace r1dist {

struct RunRecord {
  std::string dir, name, model_path, model_hash;
  bool base = false;  // train.steps = 0: the untouched model
  double lr = 0;
  int64_t steps = 0;
  MetricsData metrics;
  std::optional<EvalSummary> eval;

  // The held-out loss and KL to report: /eval when present, else the last /evals row
  // (NaN when neither exists).
  double loss() const;
  double kl() const;
};

// Throws UsageError naming the directory and the missing or unreadable file.
RunRecord read_run(const std::string& dir);

}  // namespace r1dist
