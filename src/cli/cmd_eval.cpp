// r1dist eval: the full evaluation of a model (and its adapter) on a data file of the
// training format; a table on stdout (or JSON), and the /eval group of an HDF5 file.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/model_flags.h"
#include "cli/result_json.h"
#include "r1dist/base/error.h"
#include "r1dist/base/run_lock.h"
#include "r1dist/data/dataset.h"
#include "r1dist/eval/suite.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/log/time_split.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

void print_table(const EvalSummary& s) {
  std::printf("%-26s %s\n", "model", s.model.c_str());
  std::printf("%-26s %s\n", "adapter", s.adapter.empty() ? "none (the base model)" : s.adapter.c_str());
  std::printf("%-26s %.6f over %lld tokens of %lld rows\n", "held-out loss", s.loss, (long long)s.loss_tokens,
              (long long)s.rows);
  std::printf("%-26s %.4f\n", "perplexity", s.perplexity);
  if (s.has_drift) {
    std::printf("%-26s %.6g per token\n", "KL(base || tuned)", s.kl);
    std::printf("%-26s %.4f over %lld positions\n", "top-1 agreement with base", s.top1_agreement,
                (long long)s.drift_tokens);
  }
  if (s.has_mcq)
    std::printf("%-26s %.4f (%lld of %lld; 95%% CI %.3f-%.3f)\n", "multiple-choice accuracy", s.mcq.value,
                (long long)s.mcq.correct, (long long)s.mcq.total, s.mcq.low, s.mcq.high);
  else
    std::printf("%-26s no rows with options/answer_idx\n", "multiple-choice accuracy");
  for (size_t i = 0; i < s.generations.size(); ++i) {
    const auto& g = s.generations[i];
    std::printf(
        "generation %zu: %lld tokens%s, </think> %s, answer %lld tokens, repeated 4-grams %.3f, longest "
        "repeat %lld, distinct-2 %.3f%s\n",
        i, (long long)g.tokens, g.stopped_at_eos ? " (EOS)" : " (limit)", g.think_closed ? "yes" : "no",
        (long long)g.answer_tokens, g.repetition.repeated_4gram_share, (long long)g.repetition.longest_repeat,
        g.repetition.distinct_2, g.repetition.collapsed ? "  COLLAPSED" : "");
  }
  std::printf("%-26s %s\n", "collapsed", s.collapsed() ? "yes" : "no");
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  Args a("r1dist eval",
         "Evaluate a model, and its adapter when given, on a data file of the training format: held-out loss and "
         "perplexity; drift from the base (KL, top-1 agreement); multiple-choice accuracy on rows with options and "
         "answer_idx (each option scored by its mean token log-probability after the question; Wilson 95% "
         "interval); generations for the [eval] prompts with repetition measures and a collapse flag. Every figure "
         "covers the same rows: with --cfg the run's held-out rows (results also into output.dir/metrics.h5, "
         "/eval), without it every row of --data (or the first --rows). Multiple-choice items come from those "
         "rows unless eval.mcq_path names another file. Long phases print their progress with an ETA; at the end "
         "the log gives where the time went (load, held_out, multiple_choice, generations, write; time_split in "
         "--json).");
  declare_model_flags(a);
  a.option_str("data", "data file (JSON/JSONL rows of the training format; overrides data.path)")
      .option_int("rows", "without --cfg: evaluate the first N rows of --data (default: every row; nothing is "
                          "trained, so the whole file is the evaluation set)")
      .option_str("out", "HDF5 file that receives the /eval group (with --cfg: output.dir/metrics.h5; none: skip)")
      .flag("no-generate", "skip the generations")
      .flag("json", "print the results as JSON instead of a table");
  if (!a.parse(argc, argv)) return 0;
  Config cfg = config_from_flags(a, QuantMode::none);
  if (a.has("data")) cfg.data.path = a.str("data");
  if (cfg.data.path.empty()) throw UsageError("eval: give --data FILE (or a --cfg with data.path)");
  if (!a.has("cfg")) {
    // Selected as training rows (no split), then all of them evaluated.
    cfg.data.eval_fraction = 0;
    cfg.data.eval_rows = 0;
    cfg.data.sample = SampleMode::first;
    cfg.data.n_samples = a.has("rows") ? a.i64("rows") : 0;
    if (a.has("rows") && cfg.data.n_samples <= 0) throw UsageError("eval: --rows must be > 0");
    cfg.data.overlong = OverlongPolicy::truncate;
  } else if (a.has("rows")) {
    throw UsageError("eval: --rows goes without --cfg (a run's held-out rows are data.eval_rows)");
  }
  if (a.has("no-generate")) cfg.eval.prompts.clear();
  const std::string out = a.has("out") ? a.str("out") : a.has("cfg") ? cfg.output.dir + "/metrics.h5" : "none";
  // Writing into a run's own metrics file: not while that run (or another eval) works there.
  RunLock lock;
  if (out == cfg.output.dir + "/metrics.h5" && std::filesystem::is_directory(cfg.output.dir))
    lock = RunLock::acquire(cfg.output.dir, "r1dist eval --cfg");
  // The GPU starts while the tokenizer, the data and the prompts are read.
  DeviceStart device_start(device_from_flags(a, cfg));
  const auto tok = Tokenizer::load(cfg.model.path);
  Dataset data;
  try {
    data = build_dataset(cfg.data, tok, uint64_t(cfg.train.seed), a.has("cfg") ? cfg.output.dir + "/cache" : "");
  } catch (const DataError&) {
    throw;
  } catch (const UsageError& e) {
    if (a.has("cfg")) throw;
    throw UsageError(std::string(e.what()) + "\nHINT: without --cfg, --rows N sets data.n_samples: how many rows of --data are scored");
  }
  if (!a.has("cfg")) {
    data.eval = std::move(data.train);
    data.train.clear();
  }
  const auto tmpl = PromptTemplate::for_format(cfg.data.template_text, data.load.format);
  // Before the model: a bad eval.mcq_path, or an id the model cannot take, fails at once.
  auto in = suite_inputs(cfg, data, tok);
  int64_t longest = 0;  // positions restart at each row, packed or not
  for (const auto& e : data.eval) longest = std::max(longest, int64_t(e.ids.size()));
  warn_past_max_positions(read_qwen2_config(cfg.model.path), cfg.model.path, longest,
                          "the longest row (" + std::to_string(longest) +
                              " tokens; data.max_seq_len = " + std::to_string(cfg.data.max_seq_len) + ")",
                          "lower data.max_seq_len (a --cfg setting) to the model's max_position_embeddings");
  device_start.wait();
  auto lm = load_model_from_flags(a, cfg);
  in.drift = !lm.adapter.empty();
  TimeSplit split({"load", "held_out", "multiple_choice", "generations", "write"});
  split.add_since_process_start("load");  // tokenizer, data and model
  auto s = run_eval_suite(
      lm.model, tok, tmpl, in, [](const std::string& line) { log::info("eval: ", line); }, &split);
  s.model = cfg.model.path;
  s.adapter = lm.adapter;
  s.data = cfg.data.path;
  s.settings = cfg.to_toml("eval");
  if (out != "none") {
    const auto scope = split.time("write");
    write_eval_group(out, s);
    log::info("eval: results in ", out, " (/eval; h5dump -g /eval ", out, ")");
  }
  const auto parts = split.finish();
  log::info(format_time_split(parts, "time split of this r1dist eval process (seconds, share of the total):"));
  if (a.has("json")) {
    auto j = eval_summary_json(s);
    j["time_split"] = time_split_json(parts);
    std::cout << j.dump(1) << "\n";
  } else {
    print_table(s);
  }
  return 0;
}

}  // namespace r1dist
