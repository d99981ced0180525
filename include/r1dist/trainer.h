// The main job: distributed QLoRA training of one config (docs/ARCHITECTURE.md, "train").
// Every rank holds the frozen NF4 base and the same LoRA adapters; each computes the
// gradients of its slice of every global batch; only the flat LoRA-gradient buffer is
// summed across ranks (NCCL or MPI) before one AdamW step that every rank applies alike.
#pragma once
#include <cstdint>
#include <string>

#include "r1dist/config.h"

namespace r1dist {

struct TrainOptions {
  std::string resume;       // "" = fresh run; "auto" = newest valid checkpoint in output.dir
                            // (fresh when there is none); else a checkpoint path
  std::string config_path;  // for the log
  int64_t stop_after = 0;   // > 0: stop after this step with a checkpoint (a time-limited
                            // job that a later --resume continues; the schedule is unchanged)
};

struct TrainResult {
  int64_t steps_done = 0;
  bool stopped_on_drift = false;  // eval.max_kl exceeded
  std::string last_checkpoint, best_checkpoint;
  double final_loss = 0;
};

TrainResult train(const Config& cfg, const TrainOptions& opt);

// Fault injection for the crash-safety tests, from the environment variable R1DIST_FAULT:
//   "kill:rank=R:step=S"        rank R raises SIGKILL after completing step S
//   "kill_in_checkpoint:step=S" rank 0 raises SIGKILL halfway through writing step S's
//                               checkpoint (after the temporary file has data)
//   "nan_loss:rank=R:step=S"    rank R's loss of step S becomes NaN (before its backward)
// Unset (the normal case): nothing happens.
struct FaultPlan {
  enum Kind { none, kill, kill_in_checkpoint, nan_loss } kind = none;
  int rank = 0;
  int64_t step = -1;
  static FaultPlan from_env();
};

}  // namespace r1dist
