// r1dist train --cfg FILE (or r1dist --cfg FILE): the main job (training, or --dry-run), and `r1dist config`.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/result_json.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/run_lock.h"
#include "r1dist/config/config.h"
#include "r1dist/config/config_diff.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/packing.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/dist/stop_signals.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/model/build_model.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/torch_error.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "r1dist/train/build_run.h"
#include "r1dist/train/progress.h"
#include "r1dist/train/trainer.h"

namespace r1dist {

namespace {

// "<=128: 3, <=256: 40, ..." : how many examples fall under each power of two up to the limit.
std::string length_histogram(const std::vector<Example>& examples, int64_t max_len) {
  std::vector<int64_t> edges;
  for (int64_t e = 64; e < max_len; e *= 2) edges.push_back(e);
  edges.push_back(max_len);
  std::vector<int64_t> counts(edges.size(), 0);
  for (const auto& ex : examples) {
    size_t i = 0;
    while (i + 1 < edges.size() && int64_t(ex.ids.size()) > edges[i]) ++i;
    ++counts[i];
  }
  std::string out;
  for (size_t i = 0; i < edges.size(); ++i)
    if (counts[i]) out += (out.empty() ? "" : ", ") + std::string("<=") + std::to_string(edges[i]) + ": " +
                          std::to_string(counts[i]);
  return out.empty() ? "none" : out;
}

// The first step's layout: padded per micro-batch (its padding share) and, either way, what
// packing makes of its rows, so that a user sees what data.packing would save.
void log_first_step_layout(const Config& cfg, const Run& run, int world) {
  const auto lengths = example_lengths(run.data.train);
  const auto padded = unpacked_slots(run.plan, 0, lengths, world, cfg.train.micro_batch, cfg.train.grad_accum);
  const auto packed = summarize_packing(run.plan, 0, lengths, cfg.data.max_seq_len, world);
  log::info("step 1: ", run.global_batch, " rows, ", padded.real, " tokens; padded per micro-batch ", padded.slots,
            " slots (", int(100 * padded.padding_share() + 0.5), "% padding); packed ", packed.sequences,
            " sequences of <= ", cfg.data.max_seq_len, " tokens (no padding); data.packing = ",
            cfg.data.packing ? "true" : "false");
}

// The training rows as JSON Lines {"ids": [...], "labels": [...]} (labels -100 where no loss
// is taken; HF convention, unshifted): the same rows for another trainer (tools/bench).
void export_rows(const std::vector<Example>& train, const std::string& path) {
  AtomicFile f(path);
  for (const auto& e : train) f.write(nlohmann::json{{"ids", e.ids}, {"labels", e.labels}}.dump() + "\n");
  f.commit();
  log::info("exported ", train.size(), " training rows to ", path);
}

// Builds the run exactly as training does (train/build_run.h: device, memory check,
// tokenizer, data through the token cache, the checks, batch plan, model with LoRA,
// optimizer, communicator, the identity a resume compares), shows what the run would do,
// then stops.
void dry_run(const Config& configured, const std::string& rows_out) {
  const auto& pg = dist_group();
  Config cfg = configured;  // train.checkpointing = "auto" resolved for the device
  const Run run(cfg, pg);
  const auto& mc = run.model.config();
  log::info("model ", cfg.model.path, ": ", mc.num_hidden_layers, " layers, hidden ", mc.hidden_size, ", heads ",
            mc.num_attention_heads, "/", mc.num_key_value_heads, ", vocab ", mc.vocab_size, ", ",
            base_param_count(mc), " parameters; LoRA r=", cfg.lora.r, " on ", cfg.lora.targets.size(),
            " projections: ", run.model.lora().flat().numel(), " trainable");
  log::info("tokenizer ", run.tok.path(), ": ", run.tok.vocab_size(), " tokens; train lengths (tokens) ",
            length_histogram(run.data.train, cfg.data.max_seq_len));
  log_first_step_layout(cfg, run, pg.world);
  if (!rows_out.empty() && pg.rank == 0) export_rows(run.data.train, rows_out);
  log::info("run identity: config.json hash ", run.id.model_hash, ", weights ", run.id.weights, ", data ",
            run.id.data_fingerprint, " (rows ", run.id.rows_fingerprint, "), global batch ", run.global_batch, ", gradients over ", run.id.comm_backend);
  log::info("dry run: config, tokenizer, data and model are valid; stopping before training");
}

}  // namespace

namespace {
int train_command(const Args& a);  // below: cmd_run's body once its flags are parsed
}  // namespace

int cmd_run(int argc, char** argv) {
  Args a("r1dist train",
         "Train as a TOML config describes (under mpirun: one rank per GPU or CPU slot). `r1dist --cfg FILE` is the "
         "same command.");
  a.usage_options("--cfg FILE [OPTION...]")
      .option_str("cfg", "TOML config file")
      .option_list("set", "override a config key: section.key=value (repeatable; validated like the file)")
      .option_str("resume", "continue from a checkpoint: auto (the newest valid one in output.dir; a fresh "
                            "start when there is none) or a checkpoint path")
      .option_str("resume-anyway", "with --resume: continue although the checkpoint's settings differ: all, or "
                                   "the keys that may differ (train.lr,data,model,metrics,...); recorded in "
                                   "metrics.h5")
      .option_int("stop-after", "stop after step N with a checkpoint (for time-limited jobs; --resume "
                                "continues with the same schedule)")
      .flag("dry-run", "validate the config, load the tokenizer, data and model, check the memory estimate, then stop")
      .option_str("export-rows", "with --dry-run: write the tokenized training rows to this JSON Lines file "
                                 "({\"ids\", \"labels\"} per row)")
      .flag("tensorboard", "also write TensorBoard event files under output.dir/tensorboard (output.tensorboard = true)")
      .flag("json", "at the end, print the result as JSON on stdout (rank 0): steps, stop, paths and the time "
                    "split of the command (the log's table, also in metrics.h5 /time_split); on a failure "
                    "{exit_code, error}")
      .flag("log-all-ranks", "print every rank's log lines on the terminal, not only rank 0's");
  if (!a.parse(argc, argv)) return 0;
  try {
    return train_command(a);
  } catch (const std::exception& e) {
    // With --json a failure is JSON too (rank 0): the exit code the command returns and why.
    if (a.has("json") && dist_group().rank == 0)
      std::cout << nlohmann::json{{"exit_code", dynamic_cast<const UsageError*>(&e) ? 2 : 1}, {"error", error_text(e)}}
                       .dump(1)
                << std::endl;
    throw;
  }
}

namespace {

int train_command(const Args& a) {
  const auto& pg = dist_group();
  if (!a.has("cfg")) throw UsageError("r1dist train: --cfg FILE is required (the run's TOML config; see --help)");
  const auto path = a.str("cfg");
  Config cfg = load_config(path, a.list("set"));
  if (a.has("tensorboard")) set_config_value(cfg, "output.tensorboard", "true", "--tensorboard");
  dist_set_timeout(cfg.dist.timeout_s);
  dist_set_phase("start-up");

  log::set_rank(pg.rank, pg.world, a.has("log-all-ranks"));
  std::error_code ec;
  std::filesystem::create_directories(cfg.output.dir, ec);
  if (ec) throw Error("cannot create output.dir " + cfg.output.dir + ": " + ec.message());
  // One run per output directory (a second one refuses at once, naming the holder); rank 0
  // holds the lock until the process ends. The other ranks wait for it before writing.
  RunLock lock;
  if (pg.rank == 0) lock = RunLock::acquire(cfg.output.dir, "r1dist train --cfg " + path);
  dist_barrier("MPI_Barrier after the run lock");
  log::add_file(cfg.output.dir + "/run.log");
  log::info("r1dist ", R1DIST_VERSION, ": ", path, " (", cfg.model.display_name(), "), world size ", pg.world);
  log::info("config (defaults filled in):\n", cfg.to_toml());

  if (a.has("export-rows") && !a.has("dry-run")) throw UsageError("--export-rows goes with --dry-run");
  if (a.has("dry-run")) {
    dry_run(cfg, a.has("export-rows") ? a.str("export-rows") : "");
    return 0;
  }
  TrainOptions opt;
  opt.config_path = path;
  opt.resume = a.has("resume") ? a.str("resume") : "";
  opt.resume_anyway = a.has("resume-anyway") ? a.str("resume-anyway") : "";
  if (!opt.resume_anyway.empty() && opt.resume.empty())
    throw UsageError("--resume-anyway goes with --resume auto or --resume PATH");
  if (!opt.resume_anyway.empty()) check_resume_anyway(opt.resume_anyway);
  if (a.has("stop-after")) {
    opt.stop_after = a.i64("stop-after");
    if (opt.stop_after <= 0) throw UsageError("--stop-after must be a step number > 0");
  }
  install_stop_signals();
  const TrainResult res = train(cfg, opt);
  const bool resumable = res.stopped_by_signal != 0;
  const int code = resumable ? kExitResumable : 0;
  // A resumed run that had ended (its last step, or an early stop) and found its output whole.
  const bool nothing_left =
      res.adapter_dir.empty() && (res.steps_done >= res.steps_total || !res.stop_reason.empty());
  if (res.steps_total > 0 && !nothing_left)
    log::info(resumable ? "stopped: " : "done: ", res.steps_done, " of ", res.steps_total, " steps in ",
              format_duration(res.seconds), ", final loss ", res.final_loss,
              res.stopped_on_drift ? " (stopped: drift above eval.max_kl)" : "",
              res.stopped_on_patience ? " (stopped early: " + res.stop_reason + ")" : std::string(),
              res.stopped_early ? " (stopped by --stop-after; continue with --resume auto)" : "",
              resumable ? " (stopped by a signal; exit code 75; continue with --resume auto)" : "",
              "; PEFT adapter in ", res.adapter_dir, "; metrics in ", cfg.output.dir, "/metrics.h5",
              res.best_checkpoint.empty() ? "" : "; best checkpoint " + res.best_checkpoint);
  if (pg.rank == 0) {
    // The same figures, under the same names, in the log, metrics.h5 and the JSON.
    const auto split = res.time.finish();
    log::info(format_time_split(split, "time split of this r1dist train process (seconds, share of the total):"));
    // A record of the run, not its result: a failure to add it is reported, not the run's exit code.
    try {
      if (!res.metrics_file.empty()) write_time_split(res.metrics_file, split);
    } catch (const std::exception& e) {
      log::warn("the time split is not in metrics.h5: ", e.what());
    }
    if (a.has("json")) std::cout << train_result_json(res, split, code).dump(1) << std::endl;
  }
  return code;
}

}  // namespace

int cmd_config(int argc, char** argv) {
  Args a("r1dist config",
         "Print a config with every default filled in (after --set overrides), or list every key with its type, "
         "default and meaning.");
  a.option_str("cfg", "TOML config file")
      .option_list("set", "override: section.key=value (repeatable)")
      .flag("keys", "list every known key");
  if (!a.parse(argc, argv)) return 0;
  if (a.has("keys")) {
    for (const auto& k : config_key_docs())
      std::printf("%-24s %-8s %-14s %s\n", k.key.c_str(), k.type.c_str(), k.default_value.c_str(), k.doc.c_str());
    return 0;
  }
  std::cout << load_config(a.required("cfg"), a.list("set")).to_toml();
  return 0;
}

}  // namespace r1dist
