// The main job: distributed QLoRA training of one config (docs/ARCHITECTURE.md, "train").
// Every rank holds the frozen NF4 base and the same LoRA adapters; each computes the
// gradients of its slice of every global batch; only the flat LoRA-gradient buffer is
// summed across ranks (NCCL or MPI) before one AdamW step that every rank applies alike.
// src/train/trainer.cpp reads as the recipe: build -> resume -> loop -> export.
#pragma once
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "r1dist/config/config.h"
#include "r1dist/config/memory_estimate.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/packing.h"

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
  bool stopped_on_drift = false;  // eval.max_kl exceeded
  bool stopped_early = false;     // --stop-after (resumable)
  int stopped_by_signal = 0;      // the stop signal that ended the run early (resumable)
  std::string last_checkpoint, best_checkpoint, adapter_dir;  // rank 0 knows them
  double final_loss = 0;
  double seconds = 0;
};

// The process group (dist_init) must exist.
// The memory a rank of this config needs (config/memory_estimate.h) against the device's:
// refuses (UsageError, with the estimate) when it cannot fit; logs and returns it otherwise.
MemoryEstimate check_memory(const Config& cfg, const at::Device& device);
// Refuses a global batch (micro_batch x grad_accum x world rows) larger than the training rows.
void check_global_batch(const Config& cfg, const Dataset& data, int world);
// With data.packing: warns when a step packs into fewer sequences than there are ranks.
void warn_idle_ranks(const PackingSummary& step1, int world);
// Refuses data whose token ids do not fit the model's embedding (vocab_size from
// model.path/config.json): a tokenizer that does not belong to the model.
void check_token_ids(const Config& cfg, const Dataset& data, int64_t vocab_size);

TrainResult train(const Config& cfg, const TrainOptions& opt);

}  // namespace r1dist
