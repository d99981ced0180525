// Fault injection for the crash-safety tests, from the environment variable R1DIST_FAULT:
//   "kill:rank=R:step=S"        rank R raises SIGKILL after completing step S
//   "kill_in_checkpoint:step=S" rank 0 raises SIGKILL halfway through writing step S's
//                               checkpoint (after the temporary file has data)
//   "nan_loss:rank=R:step=S"    rank R's loss and gradients of step S become NaN (before
//                               the all-reduce)
//   "signal:rank=R:step=S"      rank R sends itself SIGTERM during step S (before the
//                               all-reduce), as a scheduler would
// Unset (the normal case): every hook returns at once.
#pragma once
#include <ATen/Tensor.h>

#include <cstdint>

namespace r1dist {

struct FaultPlan {
  enum Kind { none, kill, kill_in_checkpoint, nan_loss, signal } kind = none;
  int rank = 0;
  int64_t step = -1;
  static FaultPlan from_env();  // throws UsageError on a malformed R1DIST_FAULT

  // Called with this rank's all-reduce buffer of step `step` (1-based) before the collective.
  void before_allreduce(at::Tensor& buffer, int my_rank, int64_t step) const;
  // Called after step `step` completed (metrics row written).
  void after_step(int my_rank, int64_t step) const;
  // Called before the checkpoint of step `step` is written.
  void before_checkpoint(int64_t step) const;
};

}  // namespace r1dist
