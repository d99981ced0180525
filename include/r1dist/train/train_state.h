// A training run's state between steps and its round trip through an HDF5 checkpoint
// (formats/checkpoint.h): the adapters, the AdamW moments, every rank's generator states,
// the step (the data position: the batch plan is a function of it) and the best eval loss.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/config/config_diff.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/train/optim.h"

namespace r1dist {

struct TrainState {
  int64_t step = 0;  // optimizer steps completed
  double last_lr = 0;
  bool has_best = false;
  double best_eval = 0;
  std::string best_path, last_path;  // checkpoints (rank 0 knows them)
};

// What a checkpoint must match to be resumed by this run.
struct RunIdentity {
  std::string model_hash;        // of the model's config.json
  std::string weights;           // st::weights_fingerprint of its safetensors
  std::string data_fingerprint;  // tokenized data (build_dataset)
  int64_t global_batch = 0;      // rows per step: micro_batch x grad_accum x world
  std::string comm_backend;
};

// The identity of the model directory: a hash of its config.json, and the fingerprint of
// its weights (formats/safetensors.h weights_fingerprint).
std::string model_hash(const std::string& model_dir);
std::string model_weights_fingerprint(const std::string& model_dir);

// Writes checkpoints/step_N.h5 of `state` (rank 0 writes; every rank contributes its
// generator states, so every rank must call this). Rotates old checkpoints, keeping the
// best. Returns the path on rank 0, "" elsewhere.
std::string save_checkpoint(const Config& cfg, const TrainState& state, const RunIdentity& id,
                            const Qwen2Model& model, AdamW& opt, const at::Device& device);

// What makes a checkpoint another run's, as changes "key: was -> now": every config key
// that changes the math (config/config_diff.h), "model" (the hash of the model's
// config.json, or the fingerprint of its weights), "data" (the fingerprint of the tokenized
// rows) and "global batch" (rows per step; the batch plan depends on it, so it cannot be
// overridden).
std::vector<ConfigChange> resume_differences(const CheckpointState& s, const Config& cfg, const RunIdentity& id);

struct ResumeChoice {
  std::string path;                     // "" = start at step 0
  CheckpointState state;                // as read (checksums verified)
  std::vector<ConfigChange> overridden; // differences accepted by --resume-anyway
};

// The checkpoint a run continues from. resume: "auto" (the newest checkpoint in output.dir
// that is intact and of this run: damaged ones and other runs' are skipped with a warning
// naming why) or a path (which must be both). anyway: "" (differences refuse the resume,
// listing each), "all", or comma-separated keys that may differ (recorded by the caller).
// Refuses (UsageError) when checkpoints exist but none is intact, or none matches. Rank 0
// reads and checks the candidates; the other ranks learn its choice (or its refusal) and read
// only the chosen checkpoint.
ResumeChoice choose_checkpoint(const Config& cfg, const RunIdentity& id, const std::string& resume,
                               const std::string& anyway);

// Loads the chosen checkpoint into the model's adapters and the optimizer, restores this
// rank's generator states, and returns the state. Refuses a checkpoint whose adapter
// shapes differ from the model's.
TrainState load_checkpoint(const ResumeChoice& choice, const Config& cfg, const Qwen2Model& model, AdamW& opt,
                           const at::Device& device);

}  // namespace r1dist
