// r1dist sweep plan | status: a sweep file (sweep/sweep.h) checked point by point and written
// out as one config per point, and what became of each point.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/dataset.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/sweep/sweep.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "r1dist/train/build_run.h"
#include "r1dist/train/run_identity.h"

namespace r1dist {

namespace {

// What --dry-run checks before the model is built, for one point: the model directory
// (config.json, tokenizer, readable weights), the data (tokenized into the point's cache,
// which the run then reuses), the batch against the data, the memory estimate (against
// gpu_gb when given). Returns the estimate's text; throws UsageError with the key at fault.
std::string check_point(const SweepPoint& pt, int ranks, double gpu_gb) {
  const Config& cfg = pt.cfg;
  Qwen2Config mc;
  try {
    mc = read_qwen2_config(cfg.model.path);
    (void)model_weights_fingerprint(cfg.model.path);
  } catch (const std::exception& e) {
    throw UsageError("model.path = \"" + cfg.model.path + "\": " + e.what());
  }
  std::optional<Tokenizer> tok;
  try {
    tok.emplace(Tokenizer::load(cfg.model.path));
  } catch (const std::exception& e) {
    throw UsageError("model.path = \"" + cfg.model.path + "\" (its tokenizer): " + e.what());
  }
  if (cfg.data.path.empty()) throw UsageError("data.path is not set");
  Dataset data;
  try {
    make_dirs(cfg.output.dir);
    data = build_dataset(cfg.data, *tok, uint64_t(cfg.train.seed), cfg.output.dir + "/cache");
  } catch (const std::exception& e) {
    throw UsageError("data.path = \"" + cfg.data.path + "\": " + e.what());
  }
  if (data.train.empty() && !pt.base)
    throw UsageError("data.path = \"" + cfg.data.path + "\": no training rows left after selection");
  checked_global_batch(cfg, data, *tok, ranks);
  if (!cfg.eval.mcq_path.empty()) {
    try {
      (void)load_mcq_items(cfg.eval.mcq_path, cfg.data.fields);
    } catch (const std::exception& e) {
      throw UsageError("eval.mcq_path = \"" + cfg.eval.mcq_path + "\": " + e.what());
    }
  }
  if (pt.base) return "evaluation only";
  // Against the given GPU size (which also sizes train.checkpointing = "auto");
  // train.memory_budget_gb is checked either way.
  const auto est = estimate_training_memory(mc, resolve_checkpointing(cfg, gpu_gb > 0 ? gpu_gb * 1e9 : 0.0));
  char gpu[64];
  std::snprintf(gpu, sizeof gpu, "a GPU of %g GB", gpu_gb);
  check_memory_fits(est, gpu_gb > 0 ? gpu_gb * 1e9 : std::numeric_limits<double>::infinity(), gpu, cfg);
  return est.describe();
}

int plan_action(int argc, char** argv) {
  Args a("r1dist sweep plan",
         "Expand a sweep file (docs/SWEEPS.md) into one full config per point and check every point as --dry-run "
         "does before the model is built: config keys and ranges, the model directory (config.json, tokenizer, "
         "weights), the data (tokenized into the point's cache), the global batch at --ranks ranks, the memory "
         "estimate (against --gpu-memory-gb when given). Adds one base evaluation (train.steps = 0) per distinct "
         "model. Writes OUT/configs/NAME.toml, OUT/sweep.json and OUT/points.tsv only when every point can run; "
         "otherwise lists every problem with its file, line, point and key and exits 2.");
  a.option_str("file", "the sweep file (TOML)")
      .positional({{"file", "FILE"}})
      .option_str("out", "output root (default: the file's [sweep] out, else runs/<file stem>)")
      .option_list("set", "section.key=value for every point (repeatable; applied last)")
      .option_str("models", "folder holding the model directories: every model.path becomes MODELS/<its last "
                            "component>")
      .option_str("data", "the data file for every point (data.path)")
      .option_int("ranks", "ranks per point (the global batch is micro_batch x grad_accum x ranks)", 1)
      .option_real("gpu-memory-gb", "refuse points whose memory estimate exceeds this (0: only print it)", 0.0);
  if (!a.parse(argc, argv)) return 0;
  SweepOptions opt;
  opt.out = a.has("out") ? a.str("out") : "";
  opt.sets = a.list("set");
  opt.models = a.has("models") ? a.str("models") : "";
  opt.data = a.has("data") ? a.str("data") : "";
  const int ranks = int(a.i64("ranks"));
  if (ranks < 1) throw UsageError("--ranks must be >= 1");
  const Sweep sw = read_sweep(a.required("file"), opt);
  std::vector<std::string> problems, memory(sw.points.size());
  for (size_t i = 0; i < sw.points.size(); ++i) {
    const auto& pt = sw.points[i];
    log::info("sweep plan: checking point ", i + 1, " of ", sw.points.size(), ": ", pt.name);
    try {
      memory[i] = check_point(pt, ranks, a.real("gpu-memory-gb"));
    } catch (const std::exception& e) {
      problems.push_back(pt.where + ": " + e.what());
    }
  }
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "\n") + p;
    throw UsageError(std::to_string(problems.size()) + " of " + std::to_string(sw.points.size()) +
                     " points cannot run; no plan was written (the data caches of the points checked stay, "
                     "for their runs):\n" + all);
  }
  write_sweep_plan(sw);
  int tuned = 0, base = 0;
  std::printf("%-5s %-6s %-36s %-8s %-9s %s\n", "index", "kind", "name", "steps", "lr", "memory per rank");
  for (size_t i = 0; i < sw.points.size(); ++i) {
    const auto& pt = sw.points[i];
    const int index = pt.base ? base++ : tuned++;
    char lr[32];
    std::snprintf(lr, sizeof lr, "%g", pt.cfg.train.lr);
    char length[32];
    if (pt.cfg.train.epochs > 0) std::snprintf(length, sizeof length, "%g ep", pt.cfg.train.epochs);
    else std::snprintf(length, sizeof length, "%lld", static_cast<long long>(pt.cfg.train.steps));
    std::printf("%-5d %-6s %-36s %-8s %-9s %s\n", index, pt.base ? "base" : "tuned", pt.name.c_str(), length,
                pt.base ? "-" : lr, memory[i].c_str());
  }
  std::printf("plan: %s\n", sw.out.c_str());
  log::info("sweep plan: ", tuned, " fine-tunes and ", base, " base evaluations in ", sw.out,
            " (configs/, sweep.json, points.tsv); run them with cluster/slurm/submit.sh --sweep ", sw.file);
  return 0;
}

int status_action(int argc, char** argv) {
  Args a("r1dist sweep status",
         "What became of each point of a planned sweep: done, running (with its step), stopped (by a signal, "
         "resumable), failed (with the reason from its log), interrupted (an attempt that never ended), not started; "
         "and how many attempts each took (cluster/slurm/run_point.sh records them).");
  a.option_str("dir", "the sweep's output root (where sweep.json is)").positional({{"dir", "DIR"}});
  if (!a.parse(argc, argv)) return 0;
  const auto points = sweep_status(a.required("dir"));
  std::map<std::string, int> count;
  std::printf("%-36s %-6s %-12s %-8s %s\n", "name", "kind", "state", "attempts", "detail");
  for (const auto& p : points) {
    std::printf("%-36s %-6s %-12s %-8d %s\n", p.name.c_str(), p.kind.c_str(), p.state.c_str(), p.attempts,
                p.detail.c_str());
    ++count[p.state];
  }
  std::string sum;
  for (const auto& [state, n] : count) sum += (sum.empty() ? "" : ", ") + std::to_string(n) + " " + state;
  std::printf("%zu points: %s\n", points.size(), sum.c_str());
  return 0;
}

}  // namespace

int cmd_sweep(int argc, char** argv) {
  static const char* usage =
      "usage: r1dist sweep plan FILE [--out DIR] [--set section.key=value ...] [--models DIR] [--data FILE]\n"
      "                         [--ranks N] [--gpu-memory-gb G]\n"
      "       r1dist sweep status DIR\n"
      "A sweep file (docs/SWEEPS.md) gives a grid of settings or a list of points; `plan` checks and writes one\n"
      "config per point, `status` shows what became of each. cluster/slurm/submit.sh --sweep FILE plans and submits\n"
      "(--local: runs the points one after another here).\n";
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << usage;
    return argc < 2 ? 2 : 0;
  }
  const std::string action = argv[1];
  if (action == "plan") return plan_action(argc - 1, argv + 1);
  if (action == "status") return status_action(argc - 1, argv + 1);
  throw UsageError("sweep: unknown action '" + action + "' (plan or status)\n" + usage);
}

}  // namespace r1dist
