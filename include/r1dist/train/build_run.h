// The build phase of a run, the one that training and `--dry-run` share: device -> host link
// and compute rates (train.offload = "auto") -> memory check -> tokenizer -> data (rank 0 tokenizes and fills the cache, the others read it) ->
// the checks of data against batch and model -> batch plan -> model + LoRA -> optimizer ->
// communicator -> the run's identity. Built in this order by Run's constructor (members in
// declaration order); each stage logs what it made.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "r1dist/comm/communicator.h"
#include "r1dist/config/config.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/batch_plan.h"
#include "r1dist/data/dataset.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "r1dist/train/fault.h"
#include "r1dist/train/optim.h"
#include "r1dist/train/run_identity.h"

namespace r1dist {

struct Run {
  // The process group (dist_init) must exist; output.dir is created. Refuses (UsageError)
  // a config that cannot fit in memory, a global batch larger than the training rows, and
  // token ids beyond the model's vocabulary. train.checkpointing = "auto" is resolved in
  // `cfg` for this rank's device (config/memory_estimate.h: resolve_checkpointing).
  Run(Config& cfg, const ProcessGroup& pg, const FaultPlan& faults = {});

  at::Device device;      // this rank's, with the process settings that keep a CPU rank fast
  OffloadRates rates;     // train.offload = "auto": rank 0's, the layer timed once the model is built
  MemoryEstimate memory;  // per rank (config/memory_estimate.h), with the plan the step follows
  Tokenizer tok;
  Dataset data;
  int64_t global_batch;   // micro_batch x grad_accum x ranks
  BatchPlan plan;
  Qwen2Model model;       // the frozen base with LoRA attached; per-rank dropout streams seeded
  AdamW optimizer;
  std::unique_ptr<Communicator> comm;
  RunIdentity id;
};

// `rates` with the compute figure of this model's own layer 0: its forward at the step's
// shape (train.micro_batch x data.max_seq_len tokens, causal, gradients on as in training;
// median of 3 after a warm-up), as layer_forward_flops per second. The random streams are
// restored afterwards. What train.offload = "auto" plans with once the model is built.
OffloadRates with_layer_forward_rate(const Qwen2Model& model, const Config& cfg, OffloadRates rates);

// Rows per step (micro_batch x grad_accum x world), after the checks of the data against the
// batch and the model that need no device: refuses (UsageError) a global batch larger than
// the training rows and token ids beyond the model's vocabulary (check_token_id; `tok` made
// the data). The build phase and `r1dist sweep plan` (which checks every point before
// anything runs) both call it.
int64_t checked_global_batch(const Config& cfg, const Dataset& data, const Tokenizer& tok, int world);

}  // namespace r1dist
