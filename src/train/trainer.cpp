// The training recipe: build (device -> data -> model + LoRA -> optimizer -> communicator)
// -> resume -> loop (step, eval, checkpoint) -> export. Each stage is a named piece; the
// pieces that hold state across steps live in their own files (train_state, step,
// progress, run_files, fault). Checkpoint files are written on a background thread
// (formats/checkpoint_writer.h); the recipe waits for it wherever a checkpoint must be on
// disk. Each stage's time goes into the result's time split (log/time_split.h).
#include "r1dist/train/trainer.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/config/config_diff.h"
#include "r1dist/data/packing.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/dist/stop_signals.h"
#include "r1dist/eval/held_out.h"
#include "r1dist/eval/suite.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/checkpoint_writer.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/formats/tensorboard.h"
#include "r1dist/log/log.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/step_profiler.h"
#include "r1dist/train/build_run.h"
#include "r1dist/train/fault.h"
#include "r1dist/train/progress.h"
#include "r1dist/train/run_files.h"
#include "r1dist/train/step.h"
#include "r1dist/train/train_state.h"

namespace r1dist {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// eval.suite: the full evaluation of the finished run on rank 0, into metrics.h5 /eval (the
// metrics writer is closed by then), and to the TensorBoard events at the final step. Base
// versions (train.steps = 0) measure no drift.
void final_evaluation(const Config& cfg, const Qwen2Model& model, const Tokenizer& tok, const Dataset& data,
                      const SuiteInputs& suite, TensorBoardWriter* tensorboard, int64_t step) {
  if (!cfg.eval.suite || dist_group().rank != 0) return;
  const auto t0 = Clock::now();
  auto in = suite;
  in.drift = cfg.train.steps > 0;
  auto s = run_eval_suite(model, tok, PromptTemplate::for_format(cfg.data.template_text, data.load.format), in,
                          [](const std::string& line) { log::info("final evaluation: ", line); });
  s.model = cfg.model.path;
  s.adapter = cfg.train.steps > 0 ? cfg.output.dir + "/adapter" : "";
  s.data = cfg.data.path;
  s.settings = cfg.to_toml("eval");
  write_eval_group(cfg.output.dir + "/metrics.h5", s);
  if (tensorboard) tensorboard->append(step, s);
  log::info("final evaluation in ", cfg.output.dir, "/metrics.h5 (/eval) after ", seconds_since(t0), " s");
}

// A fresh run never mixes its checkpoints with an earlier run's.
void refuse_existing_checkpoints(const Config& cfg, const ProcessGroup& pg) {
  const auto existing = pg.rank == 0 ? find_latest_checkpoint(cfg.output.dir) : "";
  if (!existing.empty())
    throw UsageError("output.dir " + cfg.output.dir + " already holds checkpoints of a run (" + existing +
                     ")\nHINT: continue it with --resume auto, or set output.dir to a new directory");
}

// What happens after step `step`: evaluate, checkpoint, stop.
struct AfterStep {
  bool eval = false, save = false, stop_early = false, last = false;
};
AfterStep after_step(const Config& cfg, const TrainOptions& opt, const Dataset& data, int64_t step) {
  AfterStep a;
  a.last = step == cfg.train.steps;
  a.stop_early = opt.stop_after > 0 && step == opt.stop_after && !a.last;
  a.save = a.last || a.stop_early || (cfg.output.save_every > 0 && step % cfg.output.save_every == 0);
  a.eval = !data.eval.empty() && (a.last || (cfg.eval.every_steps > 0 && step % cfg.eval.every_steps == 0));
  return a;
}

// A new best eval loss is checkpointed (and never rotated away); drift beyond eval.max_kl
// stops the run with a checkpoint; eval.patience evaluations in a row that do not improve on
// the best by eval.min_delta stop it too (early stopping; the best checkpoint is exported).
void track_best_and_drift(const Config& cfg, const EvalRecord& ev, TrainState& state, AfterStep& next,
                          TrainResult& res) {
  const bool improved = !state.has_best || ev.eval_loss < state.best_eval - cfg.eval.min_delta;
  if (!state.has_best || ev.eval_loss < state.best_eval) {
    state.has_best = true;
    state.best_eval = ev.eval_loss;
    state.best_path = checkpoint_path(cfg.output.dir, state.step);
    next.save = true;
  }
  state.evals_without_improvement = improved ? 0 : state.evals_without_improvement + 1;
  if (cfg.eval.patience > 0 && state.evals_without_improvement >= cfg.eval.patience && !next.last) {
    char best[32], delta[32];
    std::snprintf(best, sizeof best, "%.6g", state.best_eval);
    std::snprintf(delta, sizeof delta, "%g", cfg.eval.min_delta);
    res.stop_reason = "eval.patience: " + std::to_string(state.evals_without_improvement) +
                      " evaluations without the held-out loss improving on " + best + " by eval.min_delta = " +
                      delta + "; the best checkpoint " + state.best_path +
                      " is the adapter";
    log::warn("early stop after step ", state.step, " of ", cfg.train.steps, ": ", res.stop_reason);
    res.stopped_on_patience = next.save = true;
    state.stop_reason = res.stop_reason;
    state.adapter_is_best = true;
  }
  if (cfg.eval.max_kl > 0 && ev.kl > cfg.eval.max_kl) {
    char kl[32], limit[32];
    std::snprintf(kl, sizeof kl, "%.6g", ev.kl);
    std::snprintf(limit, sizeof limit, "%g", cfg.eval.max_kl);
    const std::string why = std::string("eval.max_kl: the drift KL ") + kl + " exceeds " + limit + " at step " +
                            std::to_string(state.step) +
                            "; the adapter is this step's, the best checkpoint by held-out loss is kept";
    log::warn("early stop after step ", state.step, " of ", cfg.train.steps, ": ", why);
    res.stopped_on_drift = next.save = true;
    if (res.stop_reason.empty()) res.stop_reason = why;
    if (state.stop_reason.empty()) state.stop_reason = why;
  }
}

// Loads the best checkpoint's adapters (eval.patience: they are the run's result) and
// returns the state with the step and the last checkpoint of `ended`.
TrainState with_best_adapters(const Config& cfg, const TrainState& ended, Run& run) {
  ResumeChoice best;
  best.path = ended.best_path;
  best.state = read_checkpoint(best.path);
  TrainState state = load_checkpoint(best, cfg, run.model, run.optimizer, run.device);
  state.last_path = ended.last_path;
  state.step = ended.step;
  state.stop_reason = ended.stop_reason;
  state.adapter_is_best = true;
  return state;
}

// A resumed run whose checkpoint is its end (the last step, or an early stop recorded in it):
// what may be missing is its output, which is made again from that checkpoint: the adapter
// (absent, incomplete, or exported at another step: a kill between the last checkpoint and
// the export leaves an earlier stop's adapter) and, with eval.suite, the final evaluation.
void finish_ended_run(const Config& cfg, Run& run, const ResumeChoice& resumed, TrainState state,
                      const SuiteInputs& suite, TrainResult& res) {
  const auto& pg = dist_group();
  TimeSplit& split = res.time;
  split.add_since_process_start("load");
  res.stop_reason = state.stop_reason;
  const std::string adapter = cfg.output.dir + "/adapter", metrics_file = cfg.output.dir + "/metrics.h5";
  // Rank 0 looks; every rank follows its decision (the export has a barrier).
  int32_t todo[2] = {0, 0};  // export, final evaluation (1: missing, 2: made under other [eval] settings)
  std::vector<ConfigChange> eval_changes;  // rank 0: from the settings the file's /eval ran under
  if (pg.rank == 0) {
    todo[0] = adapter_exported_at(adapter) != state.step;
    if (cfg.eval.suite) {
      const auto done = read_eval_group(metrics_file);
      if (done && !done->settings.empty()) eval_changes = suite_config_changes(done->settings, cfg.to_toml("eval"));
      todo[1] = !done ? 1 : eval_changes.empty() ? 0 : 2;
    }
  }
  dist_broadcast(todo, sizeof todo, 0, "MPI_Bcast of what a finished run still needs");
  if (!todo[0] && !todo[1]) {
    log::info("nothing to do: the run ended at step ", state.step, " of ", cfg.train.steps,
              state.stop_reason.empty() ? "" : " (" + state.stop_reason + ")", "; its checkpoint is ", resumed.path,
              ", the adapter is exported", cfg.eval.suite ? " and evaluated" : "");
    return;
  }
  if (todo[0]) {
    log::warn("the run ended at step ", state.step, " but ", adapter, " is missing, incomplete or from another step: ",
              "exporting it from the checkpoint");
    if (state.adapter_is_best) state = with_best_adapters(cfg, state, run);
    dist_set_phase("export");
    auto timed = split.time("export");
    if (pg.rank == 0) {
      std::vector<EvalRecord> evals;  // for the model card; the metrics file is not open here
      try {
        evals = read_metrics(metrics_file).evals;
      } catch (const Error& e) {
        log::warn("the adapter's model card lists no evaluation: ", e.what());
      }
      res.adapter_dir = export_adapter(cfg, run.model, run.id, state.step, evals);
    }
    dist_barrier("MPI_Barrier after the adapter export");
  }
  if (todo[1]) {
    if (todo[1] == 1)
      log::warn("the run ended at step ", state.step, " without its final evaluation (eval.suite): evaluating now");
    else if (pg.rank == 0) {
      std::string changed;
      for (const auto& c : eval_changes)
        changed += (changed.empty() ? "" : ", ") + c.key + " " + (c.was.empty() ? "(absent)" : c.was) + " -> " +
                   (c.now.empty() ? "(absent)" : c.now);
      log::warn("the final evaluation in ", metrics_file, " was made under other [eval] settings (", changed,
                "): evaluating again");
    }
    if (state.adapter_is_best && !todo[0]) state = with_best_adapters(cfg, state, run);
    const auto tensorboard = pg.rank == 0 ? open_run_tensorboard(cfg, state.step) : nullptr;
    auto timed = split.time("final_eval");
    final_evaluation(cfg, run.model, run.tok, run.data, suite, tensorboard.get(), state.step);
  }
  res.last_checkpoint = state.last_path;
  res.best_checkpoint = state.best_path;
}

}  // namespace

TrainResult train(const Config& configured, const TrainOptions& opt) {
  const auto t_start = Clock::now();
  TrainResult res;
  TimeSplit& split = res.time;
  const auto& pg = dist_group();
  const FaultPlan faults = FaultPlan::from_env(configured.output.dir);
  Config cfg = configured;  // train.steps resolved from train.epochs below
  if (!opt.resume.empty() && opt.resume != "auto" && !std::filesystem::is_regular_file(opt.resume))
    throw UsageError("--resume " + opt.resume + ": no such checkpoint file\nHINT: --resume auto continues from the "
                     "newest intact checkpoint in output.dir (" + cfg.output.dir + "/checkpoints)");
  std::filesystem::create_directories(cfg.output.dir + "/checkpoints");

  // Build (train/build_run.h).
  Run run(cfg, pg, faults);
  if (cfg.train.epochs > 0) {
    cfg.train.steps = steps_for_epochs(cfg.train.epochs, int64_t(run.data.train.size()), run.global_batch);
    log::info("train.epochs = ", cfg.train.epochs, ": ", run.data.train.size(), " training rows at ",
              run.global_batch, " rows per step -> ", cfg.train.steps, " steps");
  }
  const at::Device& device = run.device;
  const Tokenizer& tok = run.tok;
  const Dataset& data = run.data;
  Qwen2Model& model = run.model;
  AdamW& optimizer = run.optimizer;
  Communicator& comm = *run.comm;
  const RunIdentity& id = run.id;
  const HeldOutSettings held_out{cfg.data.max_seq_len, cfg.eval.kl_rows};
  BaseStates base_states;  // the base model's pass over this rank's drift rows, from the first evaluation
  // eval.suite's inputs, read now: a bad eval.mcq_path, or a prompt with an id the model
  // cannot take, stops the run before it trains.
  const SuiteInputs suite = cfg.eval.suite && pg.rank == 0 ? suite_inputs(cfg, data, tok) : SuiteInputs{};
  res.steps_total = cfg.train.steps;

  if (cfg.train.steps == 0) {
    // Evaluation only (the base-model versions v2-v4): zero-initialised B makes the adapted
    // model the base model, so the same code measures it.
    check(!data.eval.empty(), "train.steps = 0 evaluates the held-out split, but it is empty\n"
                              "HINT: set data.eval_rows or data.eval_fraction");
    // Never over a fine-tune's record; with --resume auto (a sweep submitted again), once per config.
    if (const auto ckpt = find_latest_checkpoint(cfg.output.dir); !ckpt.empty())
      throw UsageError("output.dir " + cfg.output.dir + " holds a fine-tune's checkpoints (" + ckpt +
                       "): an evaluation-only run (train.steps = 0) would replace its run.json and metrics.h5\n"
                       "HINT: give the evaluation its own output.dir");
    int32_t done = 0;
    if (pg.rank == 0 && opt.resume == "auto") {
      const std::string path = cfg.output.dir + "/metrics.h5";
      try {
        if (is_file(path)) {
          const auto m = read_metrics(path);
          done = !m.evals.empty() && m.config_toml == cfg.to_toml() &&
                 (!cfg.eval.suite || read_eval_group(path).has_value());
        }
      } catch (const std::exception&) {  // unreadable: evaluate again
      }
    }
    dist_broadcast(&done, sizeof done, 0, "MPI_Bcast of whether the evaluation is done");
    if (done) {
      split.add_since_process_start("load");
      log::info("nothing to do: ", cfg.output.dir, "/metrics.h5 holds this evaluation (the same config)");
      res.seconds = seconds_since(t_start);
      return res;
    }
    split.add_since_process_start("load");
    EvalRecord ev;
    {
      auto timed = split.time("evals");
      ev = evaluate_held_out(model, data.eval, held_out, base_states, comm, 0);
    }
    log::info("evaluation only (train.steps = 0): held-out loss ", ev.eval_loss, " over ", ev.eval_tokens, " tokens");
    std::unique_ptr<TensorBoardWriter> tensorboard;
    if (pg.rank == 0) {
      open_run_metrics(cfg, data, 0, pg.world)->append(ev);
      res.metrics_file = cfg.output.dir + "/metrics.h5";
      tensorboard = open_run_tensorboard(cfg, 0);
      if (tensorboard) tensorboard->append(ev);
      write_run_json(cfg, opt.config_path, id, data, pg.world);
    }
    dist_barrier("MPI_Barrier before the final evaluation");
    {
      auto timed = split.time("final_eval");
      final_evaluation(cfg, model, tok, data, suite, tensorboard.get(), 0);
    }
    res.seconds = seconds_since(t_start);
    return res;
  }

  // Resume.
  TrainState state;
  if (opt.resume.empty()) refuse_existing_checkpoints(cfg, pg);
  const ResumeChoice resumed = choose_checkpoint(cfg, id, opt.resume, opt.resume_anyway);
  if (!resumed.path.empty()) state = load_checkpoint(resumed, cfg, model, optimizer, device);
  res.steps_done = state.step;
  if (opt.stop_after > 0 && state.step >= opt.stop_after)
    throw UsageError("--stop-after " + std::to_string(opt.stop_after) + ": the run is already at step " +
                     std::to_string(state.step) + " (" + resumed.path + ")\nHINT: give a later step, or leave it out");
  if (state.step >= cfg.train.steps || !state.stop_reason.empty()) {
    finish_ended_run(cfg, run, resumed, state, suite, res);
    res.seconds = seconds_since(t_start);
    return res;
  }
  std::unique_ptr<MetricsWriter> metrics;
  std::unique_ptr<TensorBoardWriter> tensorboard;
  if (pg.rank == 0) {
    metrics = open_run_metrics(cfg, data, state.step, pg.world, resumed.overridden, opt.resume_anyway);
    res.metrics_file = cfg.output.dir + "/metrics.h5";
    tensorboard = open_run_tensorboard(cfg, state.step);
    write_run_json(cfg, opt.config_path, id, data, pg.world);
  }
  split.add_since_process_start("load");
  // Every step and eval row goes to metrics.h5 and, with output.tensorboard, to the event files.
  auto record = [&](const auto& row) {
    if (metrics) metrics->append(row);
    if (tensorboard) tensorboard->append(row);
  };
  if (state.step == 0 && cfg.eval.every_steps > 0 && !data.eval.empty()) {
    auto timed = split.time("evals");
    const auto ev = evaluate_held_out(model, data.eval, held_out, base_states, comm, 0);
    log::info("eval at step 0 (the base model): loss ", ev.eval_loss, " over ", ev.eval_tokens, " tokens");
    record(ev);
  }

  // Loop. Rank 0 writes the checkpoints on a background thread, one at a time; the loop
  // waits for it before a new checkpoint, before reading one back and after the loop.
  CheckpointWriter checkpoints;
  StepRunner stepper(cfg, data.train, run.plan, model, optimizer, comm, faults, tok.eos_id().value_or(0),
                     run.memory.plan);
  Progress progress(cfg.train.steps, state.step);
  auto profiler = StepProfiler::from_env(pg.rank);
  while (state.step < cfg.train.steps) {
    dist_set_phase("step " + std::to_string(state.step + 1));
    const auto t0 = Clock::now();
    StepOutcome s;
    try {
      profiler.before(state.step + 1);
      s = stepper.run(state.step);
      profiler.after(state.step + 1);
    } catch (const NonFiniteStep& e) {
      std::string last;
      if (pg.rank == 0) {
        try {
          checkpoints.wait();  // the checkpoint still being written is one of the good ones
        } catch (const std::exception& w) {
          log::error(w.what());
        }
        last = find_latest_checkpoint(cfg.output.dir);
      }
      throw Error(std::string(e.what()) + "; stopping without a checkpoint of this step" +
                  (last.empty() ? std::string() : "; the last good checkpoint is " + last) +
                  "\nHINT: lower train.lr, check train.adam_eps, or check the data rows of this step");
    }
    state.step += 1;
    state.last_lr = s.lr;
    res.final_loss = s.loss;
    const double dt = seconds_since(t0);
    if (metrics)
      record(StepRecord{state.step, s.loss, s.lr, s.grad_norm, s.loss_tokens, dt, double(s.loss_tokens) / dt,
                        peak_memory_gb(device), s.real_tokens, s.slot_tokens, double(s.real_tokens) / dt,
                        double(s.slot_tokens) / dt, SlotCount{s.real_tokens, s.slot_tokens}.padding_share()});
    progress.report(state.step, s, dt);
    split.add_since("train_steps", t0);
    if (faults.kills_after(state.step)) {
      checkpoints.wait();
      dist_barrier("MPI_Barrier before the R1DIST_FAULT kill");
    }
    faults.after_step(pg.rank, state.step);

    auto next = after_step(cfg, opt, data, state.step);
    if (next.eval) {
      auto timed = split.time("evals");
      dist_set_phase("evaluation after step " + std::to_string(state.step));
      const auto ev = evaluate_held_out(model, data.eval, held_out, base_states, comm, state.step);
      log::progress_done();
      log::info("eval at step ", state.step, ": loss ", ev.eval_loss, " over ", ev.eval_tokens,
                " tokens, KL(base || tuned) ", ev.kl, " per token");
      record(ev);
      track_best_and_drift(cfg, ev, state, next, res);
    }
    if (next.save || s.stop) {  // a stop signal is answered with a checkpoint of its step
      auto timed = split.time("checkpoints");
      dist_set_phase("checkpoint of step " + std::to_string(state.step));
      log::progress_done();
      // The previous checkpoint's write first: its error ends the run here, and the fault
      // hooks of this checkpoint never meet it.
      checkpoints.wait();
      faults.before_checkpoint(pg.rank, state.step);
      state.last_path = save_checkpoint(cfg, state, id, model, optimizer, device, checkpoints);
    }
    if (s.stop) {
      // Its checkpoint is complete on disk before the exit with 75 (the wait after the loop).
      res.stopped_by_signal = stop_signal() != 0 ? stop_signal() : -1;  // -1: another rank's
      log::warn("stop signal: stopped after step ", state.step, " of ", cfg.train.steps,
                " with a checkpoint; continue with --resume auto");
      break;
    }
    if ((res.stopped_on_drift || res.stopped_on_patience) && metrics) {
      metrics->set_counter("stopped_at_step", state.step);
      metrics->set_attr("stop_reason", res.stop_reason);
    }
    if (res.stopped_on_patience) {
      // The adapter is the best checkpoint's: load its weights back before the export.
      if (pg.rank == 0) {
        auto timed = split.time("checkpoints");
        checkpoints.wait();  // the best one may still be being written
      }
      dist_barrier("MPI_Barrier before reading the best checkpoint back");
      state = with_best_adapters(cfg, state, run);
      break;
    }
    if (res.stopped_on_drift) break;
    if (next.stop_early) {
      log::info("--stop-after ", opt.stop_after, ": stopping at step ", state.step, " of ", cfg.train.steps,
                "; continue with --resume auto");
      res.stopped_early = true;
      break;
    }
  }
  log::progress_done();
  {
    // Every checkpoint complete on disk before the export, the final evaluation and the exit
    // (exit 75 promises a checkpoint to resume from); a write that failed fails the run here.
    auto timed = split.time("checkpoints");
    checkpoints.wait();
  }

  // Export.
  dist_set_phase("export");
  {
    auto timed = split.time("export");
    if (pg.rank == 0) res.adapter_dir = export_adapter(cfg, model, id, state.step, metrics->evals());
    dist_barrier("MPI_Barrier after the adapter export");
  }
  metrics.reset();
  if (state.step >= cfg.train.steps || !state.stop_reason.empty()) {  // the run's end: not a resumable stop
    auto timed = split.time("final_eval");
    final_evaluation(cfg, model, tok, data, suite, tensorboard.get(), state.step);
  }
  tensorboard.reset();
  res.steps_done = state.step;
  res.last_checkpoint = state.last_path;
  res.best_checkpoint = state.best_path;
  res.seconds = seconds_since(t_start);
  return res;
}

}  // namespace r1dist
