// r1dist metrics: prints a run's metrics.h5 as TSV (also while the run writes it: the
// reader opens it SWMR). Each table starts with a "# name" line and a header row; "columns"
// is the unit and description of every column of steps and evals, as the file records them.
// The numbers of the final evaluation (/eval) only with --table eval, the time split of the
// last r1dist train process (/time_split) only with --table time_split.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_paths.h"
#include "r1dist/base/error.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/metrics.h"

namespace r1dist {

int cmd_metrics(int argc, char** argv) {
  Args a("r1dist metrics",
         "Print a run's metrics as TSV (tables: steps, evals, counters, attrs, columns; eval: the numbers of the "
         "final evaluation; time_split: where the last r1dist train process's time went): RUN_DIR (a run's "
         "output.dir: its metrics.h5) or a metrics.h5 file.");
  a.option_str("path", "the run directory or metrics file")
      .positional({{"path", "RUN_DIR|METRICS_H5"}})
      .option_str("table", "steps, evals, counters, attrs, columns, all (those five), eval (the /eval group's numbers) "
                           "or time_split",
                  "all");
  if (!a.parse(argc, argv)) return 0;
  const auto path = metrics_arg(a.required("path"));
  const auto table = a.str("table");
  if (table != "all" && table != "steps" && table != "evals" && table != "counters" && table != "attrs" &&
      table != "columns" && table != "eval" && table != "time_split")
    throw UsageError("metrics: --table must be steps, evals, counters, attrs, columns, all, eval or time_split (got '" +
                     table + "')");
  if (table == "eval") {
    const auto s = read_eval_group(path);
    if (!s)
      throw Error("metrics: " + path + " has no /eval group\nHINT: eval.suite = true or `r1dist eval --cfg` writes it");
    std::printf("name\tvalue\n");
    for (const auto& c : eval_group_scalars(*s)) std::printf("%s\t%.9g\n", c.name, c.value);
    return 0;
  }
  const auto m = read_metrics(path);
  if (table == "time_split") {
    if (m.time_split.empty())
      throw Error("metrics: " + path + " has no /time_split\nHINT: r1dist train writes it when it ends (a killed or "
                  "still running process has none)");
    std::printf("name\tseconds\tshare\n");
    for (const auto& p : m.time_split) std::printf("%s\t%.9g\t%.9g\n", p.name.c_str(), p.seconds, p.share);
    return 0;
  }
  const bool all = table == "all";
  if (all || table == "steps") {
    if (all) std::printf("# steps\n");
    std::printf("step\tloss\tlr\tgrad_norm\ttokens\tstep_time_s\ttokens_per_s\tmem_gb\treal_tokens\tslot_tokens\t"
                "real_tokens_per_s\tslot_tokens_per_s\tpadding_share\n");
    for (const auto& s : m.steps)
      std::printf("%lld\t%.9g\t%.9g\t%.9g\t%lld\t%.9g\t%.9g\t%.9g\t%lld\t%lld\t%.9g\t%.9g\t%.6f\n",
                  static_cast<long long>(s.step), s.loss, s.lr, s.grad_norm, static_cast<long long>(s.tokens),
                  s.step_time_s, s.tokens_per_s, s.mem_gb, static_cast<long long>(s.real_tokens),
                  static_cast<long long>(s.slot_tokens), s.real_tokens_per_s, s.slot_tokens_per_s, s.padding_share);
  }
  if (all || table == "evals") {
    if (all) std::printf("# evals\n");
    std::printf("step\teval_loss\tkl\teval_tokens\n");
    for (const auto& e : m.evals)
      std::printf("%lld\t%.9g\t%.9g\t%lld\n", static_cast<long long>(e.step), e.eval_loss, e.kl,
                  static_cast<long long>(e.eval_tokens));
  }
  if (all || table == "counters") {
    if (all) std::printf("# counters\n");
    std::printf("name\tvalue\n");
    for (const auto& [k, v] : m.counters) std::printf("%s\t%lld\n", k.c_str(), static_cast<long long>(v));
  }
  if (all || table == "attrs") {
    if (all) std::printf("# attrs\n");
    std::printf("name\tvalue\n");
    for (const auto& [k, v] : m.attrs) std::printf("%s\t%s\n", k.c_str(), v.c_str());
  }
  if (all || table == "columns") {
    if (all) std::printf("# columns\n");
    std::printf("table\tname\tunit\tdescription\n");
    for (const auto& c : m.columns)
      std::printf("%s\t%s\t%s\t%s\n", c.table.c_str(), c.name.c_str(), c.unit.c_str(), c.description.c_str());
  }
  return 0;
}

}  // namespace r1dist
