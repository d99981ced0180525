// One optimizer step of the data-parallel trainer, on every rank alike: this rank's
// micro-batches of global step k (padded per micro-batch, or with data.packing its share of
// the packed sequences, data/packing.h) forward and backward (each loss scaled by 1 / the global
// loss-token count, which every rank knows from the batch plan), ONE all-reduce of the
// flat LoRA gradient buffer (the step's loss and each rank's stop vote ride in its trailing
// slots), global-norm clip, AdamW. One host sync per step, to read them with the norm.
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/base/error.h"
#include "r1dist/comm/communicator.h"
#include "r1dist/config/config.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/batch_plan.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/train/fault.h"
#include "r1dist/train/optim.h"

namespace r1dist {

struct StepOutcome {
  double loss = 0;       // mean over the global batch's loss tokens
  double grad_norm = 0;  // before clipping
  double lr = 0;
  int64_t loss_tokens = 0;   // in the global batch
  int64_t real_tokens = 0;   // the global batch's rows' tokens
  int64_t slot_tokens = 0;   // B x T of its micro-batches on every rank (padding included)
  double comm_seconds = 0;   // inside the all-reduce
  bool stop = false;         // some rank received a stop signal (dist/stop_signals.h) before
                             // this step's all-reduce: every rank stops after this step
};

// A step whose loss or gradient is NaN or infinite on some rank (every rank sees it: the
// all-reduce spreads it).
struct NonFiniteStep : Error {
  using Error::Error;
};

class StepRunner {
 public:
  // `recompute`: what the backward recomputes and offloads (the run's memory plan, Run::memory).
  StepRunner(const Config& cfg, const std::vector<Example>& train, const BatchPlan& plan, Qwen2Model& model,
             AdamW& opt, Communicator& comm, const FaultPlan& faults, int32_t pad_id, const RecomputePlan& recompute);
  // Global step `k` (0-based). Throws NonFiniteStep on a non-finite loss or gradient,
  // before the update (the adapters then hold no trace of step k).
  StepOutcome run(int64_t k);

 private:
  const Config& cfg_;
  const std::vector<Example>& train_;
  const BatchPlan& plan_;
  Qwen2Model& model_;
  AdamW& opt_;
  Communicator& comm_;
  const FaultPlan& faults_;
  int32_t pad_id_;
  std::vector<int64_t> loss_tokens_, lengths_;  // per train example
  RecomputePlan recompute_;           // what the backward recomputes (config/memory_estimate.h)
  at::Tensor buffer_;                 // the all-reduce buffer: gradients + loss slot
};

}  // namespace r1dist
