// r1dist report: runs compared in one Markdown + HTML report with plots (report/report.h).
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/log/log.h"
#include "r1dist/report/report.h"
#include "r1dist/report/scaling.h"

namespace r1dist {

int cmd_report(int argc, char** argv) {
  Args a("r1dist report",
         "Compare the runs of a sweep in report.md and report.html (the same Markdown rendered, plots embedded): a "
         "table per base model with a row per run (name, run directory, the settings that vary, held-out loss and "
         "its change in % against the base run of the same model, KL, MCQ accuracy with its 95% interval, "
         "repetition, collapse flag, verdict), the recommended run per base model (the rules are printed in the "
         "report), the generation behind each collapse flag, PNG plots (gnuplot) and the standard prompt's "
         "answers. Reads each RUN_DIR's run.json and metrics.h5 (with its /eval group when r1dist eval ran). "
         "Prints a line per run (name, directory, verdict, why) and one per base model (recommended, model, "
         "run or none, directory).\n\nWith --scaling DIR instead of runs: the weak-scaling report of the JSON lines that "
         "`bench train` and `bench allreduce` wrote into DIR/*.jsonl at several rank counts (the scaling job, "
         "cluster/slurm/scaling.sbatch): scaling.md, scaling.html and scaling.png in --out (default DIR).");
  a.option_list("run", "run directory (repeatable; bare arguments count too)")
      .positional({{"run", "RUN_DIR..."}})
      .option_str("out", "directory for report.md, report.html and the plots (default: the runs' parent)")
      .option_str("title", "report title", "r1dist report")
      .option_list("not-run", "a line for the section \"Runs without results\" (repeatable: a sweep's points "
                              "that did not run, and why)")
      .option_str("scaling", "DIR of bench JSON lines (*.jsonl): write the scaling report instead");
  if (!a.parse(argc, argv)) return 0;
  if (a.has("scaling")) {
    const auto dir = a.str("scaling");
    const auto title = a.str("title") == "r1dist report" ? "r1dist scaling" : a.str("title");
    const auto f = write_scaling_report(dir, a.has("out") ? a.str("out") : dir, title);
    std::cout << f.markdown << "\n" << f.html << "\n" << (f.plot.empty() ? "(no plot: gnuplot missing)" : f.plot) << "\n";
    log::info("report --scaling: ", f.rows, " rank counts, ", f.markdown);
    return 0;
  }
  const auto dirs = a.required_list("run");
  std::vector<RunRecord> runs;
  auto not_run = a.list("not-run");
  // A run that cannot be read (no run.json, a damaged metrics.h5) is listed, not fatal, while
  // another can be reported; with none to report, the refusal names every one.
  std::vector<std::string> unread;
  for (const auto& d : dirs) {
    try {
      runs.push_back(read_run(d));
    } catch (const UsageError& e) {
      unread.push_back(e.what());
      not_run.push_back(d + ": " + e.what());
    }
  }
  if (runs.empty()) {
    std::string all;
    for (const auto& e : unread) all += (all.empty() ? "" : "\n") + e;
    throw UsageError(all);
  }
  for (const auto& e : unread) log::warn(e);
  std::string out = a.has("out") ? a.str("out") : "";
  if (out.empty()) {
    const auto& d = dirs.front();
    const auto slash = d.find_last_of('/', d.size() > 1 && d.back() == '/' ? d.size() - 2 : std::string::npos);
    out = slash == std::string::npos ? "." : d.substr(0, slash);
  }
  const auto files = write_report(runs, out, a.str("title"), not_run);
  for (const auto& w : files.warnings) log::warn("report: ", w, " (the report's run directory column tells them apart)");
  const auto rows = compare_runs(runs);
  for (const auto& row : rows)
    std::cout << row.run->name << "\t" << row.run->dir << "\t" << row.verdict << "\t" << row.why << "\n";
  for (const auto& g : group_by_base(rows)) {
    if (!g.base) continue;
    if (g.recommended)
      std::cout << "recommended\t" << g.model << "\t" << g.recommended->run->name << "\t" << g.recommended->run->dir
                << "\n";
    else
      std::cout << "recommended\t" << g.model << "\tnone\tkeep the base\n";
  }
  log::info("report: ", files.markdown, ", ", files.html, " and ", files.plots.size(), " plots");
  return 0;
}

}  // namespace r1dist
