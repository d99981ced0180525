// `r1dist report`: the runs of a sweep compared in report.md and report.html (rendered from
// the same Markdown), grouped by base model, with plots, the recommended run per base model,
// the generations that triggered a collapse flag and the answers to the standard prompt.
//
// Each fine-tuned run is compared with the base run of the same model (the same model_path, or
// the same config.json hash and weights fingerprint; train.steps = 0). Its verdict, by the first rule that applies:
//   collapsed      a generation is flagged as collapsed (quality/repetition.h)
//   forgot         MCQ accuracy more than 5 points below the base's, and the base's accuracy
//                  above the upper end of the tuned run's 95% interval (not noise)
//   worse          held-out loss more than 1% above the base's
//   drifted        KL(base || tuned) above 0.5 nats per token
//   better         held-out loss more than 1% below the base's
//   close to base  none of the above
// Without a base in the report: "no base to compare".
//
// The recommended run of a base model: among its tuned runs whose verdict is "better" or
// "close to base" (it neither collapsed, forgot, got worse nor drifted) and that have a
// held-out loss, the one with the lowest held-out loss (the first given on a tie); none when
// there is no such run: keep the base.
#pragma once
#include <string>
#include <vector>

#include "r1dist/report/run_record.h"

namespace r1dist {

struct VersionRow {
  const RunRecord* run = nullptr;
  const RunRecord* base = nullptr;  // its base run, or nullptr
  double loss = 0, kl = 0;
  double loss_delta = 0;      // held-out loss minus the base's, nats (NaN without a base)
  double loss_delta_pct = 0;  // the same in % of the base's loss: what the rules compare
  bool has_mcq = false;
  double mcq = 0, mcq_delta = 0;  // accuracy and its difference to the base's (fractions)
  double repeated_4gram_share = 0;
  bool collapsed = false;
  int collapse_generation = -1;  // the first generation whose repetition.collapsed is set
  std::string verdict, why;

  // Tuned, and its verdict is "better" or "close to base".
  bool acceptable() const;
};

constexpr double kForgotMcqDrop = 0.05, kWorseLoss = 0.01, kBetterLoss = 0.01, kDriftedKl = 0.5;

std::vector<VersionRow> compare_runs(const std::vector<RunRecord>& runs);

// The rule in the header comment, over the rows of one base model (base rows are skipped);
// nullptr when no run qualifies.
const VersionRow* recommend(const std::vector<const VersionRow*>& rows);

// The rows of one base model: its base run(s) first, then its tuned runs in the order given.
// The group of the runs without a base has base == nullptr and no recommendation.
struct BaseGroup {
  const RunRecord* base = nullptr;
  std::string model;  // the base's model_path ("" for the runs without a base)
  std::vector<const VersionRow*> rows;
  const VersionRow* recommended = nullptr;
};

// One group per base model in the order the models first appear, the runs without a base
// last. The pointers point into `rows`.
std::vector<BaseGroup> group_by_base(const std::vector<VersionRow>& rows);

// One line per name that two or more runs share, naming their directories.
std::vector<std::string> duplicate_names(const std::vector<RunRecord>& runs);

struct ReportFiles {
  std::string markdown, html;
  std::vector<std::string> plots;     // empty when gnuplot is not installed
  std::vector<std::string> warnings;  // duplicate_names(), also at the top of the report
};

// Writes OUT_DIR/report.md (plots referenced as the PNG files beside it), report.html (the
// same Markdown rendered by cmark-gfm, plots embedded, so it can be copied away alone) and
// the PNG plots (with the gnuplot scripts and data files that made them, so a plot can be
// redrawn). `not_run` lines (a sweep's points without results, and why) end the report.
ReportFiles write_report(const std::vector<RunRecord>& runs, const std::string& out_dir, const std::string& title,
                         const std::vector<std::string>& not_run = {});

}  // namespace r1dist
