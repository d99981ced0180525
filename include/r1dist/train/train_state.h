// A training run's state between steps and its round trip through an HDF5 checkpoint
// (formats/checkpoint.h): the adapters, the AdamW moments, every rank's generator states,
// the step (the data position: the batch plan is a function of it) and the best eval loss.
// Which checkpoint a run continues from is train/resume.h; the generators, train/rng_state.h.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "r1dist/config/config.h"
#include "r1dist/formats/checkpoint_writer.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/train/optim.h"
#include "r1dist/train/resume.h"
#include "r1dist/train/run_identity.h"

namespace r1dist {

struct TrainState {
  int64_t step = 0;  // optimizer steps completed
  double last_lr = 0;
  bool has_best = false;
  double best_eval = 0;
  int64_t evals_without_improvement = 0;  // eval.patience: since best_eval improved by eval.min_delta
  std::string best_path, last_path;  // checkpoints (rank 0 knows them)
  // Why the run ended before train.steps (eval.patience or eval.max_kl); "" while it may go on.
  // Kept in the checkpoint, so that --resume auto treats the run as finished.
  std::string stop_reason;
  // eval.patience's stop: the adapter is the best checkpoint's weights, not the last one's.
  bool adapter_is_best = false;
};

// Checkpoints/step_N.h5 of `state`: every rank contributes its generator states (so every
// rank must call this); rank 0 copies the adapters and the AdamW moments to host memory and
// hands that snapshot to `writer`, which writes the file (in the background: it is complete
// once writer.wait() returns) and then rotates old checkpoints, keeping the best. Returns
// the path on rank 0, "" elsewhere.
std::string save_checkpoint(const Config& cfg, const TrainState& state, const RunIdentity& id,
                            const Qwen2Model& model, AdamW& opt, const at::Device& device, CheckpointWriter& writer);

// Loads the chosen checkpoint into the model's adapters and the optimizer, restores this
// rank's generator states (or reseeds them on another world size), and returns the state.
// Refuses a checkpoint whose adapter shapes differ from the model's.
TrainState load_checkpoint(const ResumeChoice& choice, const Config& cfg, const Qwen2Model& model, AdamW& opt,
                           const at::Device& device);

}  // namespace r1dist
