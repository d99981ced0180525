// Fault injection for the crash-safety tests, from the environment variable R1DIST_FAULT:
//   "kill:rank=R:step=S"        rank R raises SIGKILL after completing step S, once every
//                               checkpoint of an earlier step is on disk (the trainer waits
//                               for rank 0's background writer, then a barrier: kills_after)
//   "kill_in_checkpoint:step=S" rank 0 raises SIGKILL halfway through writing step S's
//                               checkpoint (after the temporary file has data), on the
//                               thread that writes it (the background checkpoint writer)
//   "nan_loss:rank=R:step=S"    rank R's loss and gradients of step S become NaN (before
//                               the all-reduce)
//   "signal:rank=R:step=S"      rank R sends itself SIGTERM during step S (before the
//                               all-reduce), as a scheduler would
//   "nan_update:rank=R:step=S"  rank R's AdamW update of step S writes a NaN into its adapters
//   "stop_at_startup:rank=R"    rank R stops itself (SIGSTOP) before the data barrier
//   "stop_in_step:rank=R:step=S" rank R stops itself in step S, before the all-reduce
//   "stop_in_checkpoint:rank=R:step=S" rank R stops itself before step S's checkpoint
//                               (a stopped rank hangs its peers' next collective: the
//                               dist.timeout_s deadline must end the job)
//   "hold:step=S[:run=NAME,NAME...]" every rank waits after step S until a stop signal
//                               arrives (at most 300 s), only in runs whose output.dir is
//                               named NAME when run= is given: a test's signal then lands at
//                               a known step, however slow or fast the machine
// Unset (the normal case): every hook returns at once.
#pragma once
#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace r1dist {

struct FaultPlan {
  enum Kind {
    none, kill, kill_in_checkpoint, nan_loss, signal, nan_update, stop_at_startup, stop_in_step, stop_in_checkpoint, hold
  } kind = none;
  int rank = 0;
  int64_t step = -1;
  std::vector<std::string> runs;  // hold: the output directories' names it applies to (empty: all)
  // Throws UsageError on a malformed R1DIST_FAULT. `output_dir` (the run's output.dir) scopes
  // run=; a plan that does not apply to this run is `none`.
  static FaultPlan from_env(const std::string& output_dir = "");

  // Called with this rank's all-reduce buffer of step `step` (1-based) before the collective.
  void before_allreduce(at::Tensor& buffer, int my_rank, int64_t step) const;
  // Called after step `step` completed (metrics row written).
  void after_step(int my_rank, int64_t step) const;
  // Whether after_step(_, step) kills a rank: the trainer then first waits for the checkpoint
  // writer and the other ranks, so that the kill lands where it did when checkpoints were
  // written inside the step (every earlier checkpoint complete, none of step S).
  bool kills_after(int64_t step) const { return kind == kill && step == this->step; }
  // Called before the checkpoint of step `step` is taken (every rank; on rank 0 once the
  // previous checkpoint's write has finished).
  void before_checkpoint(int my_rank, int64_t step) const;
  // Called with this rank's updated adapters of step `step`, before they are checked.
  void after_update(at::Tensor& flat, int my_rank, int64_t step) const;
  // Called once the run is set up, before its first collective over the data.
  void at_startup(int my_rank) const;
};

}  // namespace r1dist
