// `r1dist report`: the runs of a sweep compared in one Markdown and one HTML file, a row
// per version like the seed experiment's table, with plots and the answers to the standard
// prompt side by side.
//
// Each fine-tuned run is compared with the base run of the same model (same model_path or
// model hash, train.steps = 0). Its verdict, by the first rule that applies:
//   collapsed      a generation is flagged as collapsed (quality/repetition.h)
//   forgot         MCQ accuracy more than 5 points below the base's, and the base's accuracy
//                  above the upper end of the tuned run's 95% interval (not noise)
//   worse          held-out loss more than 1% above the base's
//   drifted        KL(base || tuned) above 0.5 nats per token
//   better         held-out loss more than 1% below the base's
//   close to base  none of the above
// Without a base in the report: "no base to compare".
#pragma once
#include <string>
#include <vector>

#include "r1dist/report/run_record.h"

namespace r1dist {

struct VersionRow {
  const RunRecord* run = nullptr;
  const RunRecord* base = nullptr;          // its base run, or nullptr
  double loss = 0, loss_delta = 0, kl = 0;  // loss_delta: vs the base (NaN without one)
  bool has_mcq = false;
  double mcq = 0, mcq_delta = 0;
  double repeated_4gram_share = 0;
  bool collapsed = false;
  std::string verdict, why;
};

constexpr double kForgotMcqDrop = 0.05, kWorseLoss = 0.01, kBetterLoss = 0.01, kDriftedKl = 0.5;

std::vector<VersionRow> compare_runs(const std::vector<RunRecord>& runs);

struct ReportFiles {
  std::string markdown, html;
  std::vector<std::string> plots;  // empty when gnuplot is not installed
};

// Writes OUT_DIR/report.md, report.html and the PNG plots (with the gnuplot scripts and data
// files that made them, so a plot can be redrawn).
ReportFiles write_report(const std::vector<RunRecord>& runs, const std::string& out_dir, const std::string& title);

}  // namespace r1dist
