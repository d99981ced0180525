// r1dist report: runs compared in one Markdown + HTML report with plots (report/report.h).
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/log/log.h"
#include "r1dist/report/report.h"

namespace r1dist {

int cmd_report(int argc, char** argv) {
  Args a("r1dist report",
         "Compare runs (e.g. the eight versions of the sweep) in one Markdown and one HTML report: a row per run "
         "with model, base or tuned, lr, steps, held-out loss and its change against the base run of the same "
         "model, KL, MCQ accuracy, repetition, collapse flag and a verdict (the rule is printed in the report); "
         "PNG plots (loss and KL over steps, accuracy against drift; gnuplot); the standard prompt's answers side "
         "by side. Reads each RUN_DIR's run.json and metrics.h5 (with its /eval group when r1dist eval ran).");
  a.option_list("run", "run directory (repeatable; bare arguments count too)")
      .positional({"run"})
      .option_str("out", "directory for report.md, report.html and the plots (default: the runs' parent)")
      .option_str("title", "report title", "r1dist report");
  if (!a.parse(argc, argv)) return 0;
  const auto dirs = a.list("run");
  if (dirs.empty()) throw UsageError("report: give one or more run directories");
  std::vector<RunRecord> runs;
  for (const auto& d : dirs) runs.push_back(read_run(d));
  std::string out = a.has("out") ? a.str("out") : "";
  if (out.empty()) {
    const auto& d = dirs.front();
    const auto slash = d.find_last_of('/', d.size() > 1 && d.back() == '/' ? d.size() - 2 : std::string::npos);
    out = slash == std::string::npos ? "." : d.substr(0, slash);
  }
  const auto files = write_report(runs, out, a.str("title"));
  for (const auto& row : compare_runs(runs))
    std::cout << row.run->name << "\t" << row.verdict << "\t" << row.why << "\n";
  log::info("report: ", files.markdown, ", ", files.html, " and ", files.plots.size(), " plots");
  return 0;
}

}  // namespace r1dist
