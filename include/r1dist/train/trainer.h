// The main job: distributed QLoRA training of one config (docs/ARCHITECTURE.md, "train").
// Every rank holds the frozen NF4 base and the same LoRA adapters; each computes the
// gradients of its slice of every global batch; only the flat LoRA-gradient buffer is
// summed across ranks (NCCL or MPI) before one AdamW step that every rank applies alike.
// src/train/trainer.cpp reads as the recipe: build -> resume -> loop -> export.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/log/time_split.h"

namespace r1dist {

struct TrainOptions {
  std::string resume;       // "" = fresh run; "auto" = newest valid checkpoint in output.dir
                            // (fresh when there is none); else a checkpoint path
  std::string resume_anyway;  // "" = a checkpoint of other settings refuses; "all" or keys that may differ
  std::string config_path;  // for the log and run.json
  int64_t stop_after = 0;   // > 0: stop after this step with a checkpoint (a time-limited
                            // job that a later --resume continues; the schedule is unchanged)
};

struct TrainResult {
  int64_t steps_done = 0;
  int64_t steps_total = 0;        // train.steps, or the steps train.epochs gives
  bool stopped_on_patience = false;  // eval.patience evaluations without improvement
  std::string stop_reason;        // why the run ended before steps_total ("" when it did not)
  bool stopped_on_drift = false;  // eval.max_kl exceeded
  bool stopped_early = false;     // --stop-after (resumable)
  int stopped_by_signal = 0;      // the stop signal that ended the run early (resumable)
  std::string last_checkpoint, best_checkpoint, adapter_dir;  // rank 0 knows them
  std::string metrics_file;       // output.dir/metrics.h5 when this process wrote it (rank 0)
  double final_loss = 0;
  double seconds = 0;
  // Where this process's time went: load (everything before the first step: start-up,
  // device, tokenizer, data, model load and quantization, LoRA, communicator, resume),
  // train_steps, evals (held-out evaluations during training, the step-0 one included),
  // checkpoints (on the main thread: the snapshot and any wait for the background writer),
  // export, final_eval (eval.suite); finish() adds other and total.
  TimeSplit time{train_time_parts()};
  static std::vector<std::string> train_time_parts() {
    return {"load", "train_steps", "evals", "checkpoints", "export", "final_eval"};
  }
};

// Builds the run (train/build_run.h), resumes (train/resume.h), trains, exports. The process
// group (dist_init) must exist. With train.epochs the step count is computed once the data is
// loaded (steps_for_epochs, data/batch_plan.h) and the schedule, progress and checkpoints count it.
TrainResult train(const Config& cfg, const TrainOptions& opt);

}  // namespace r1dist
