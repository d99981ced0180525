// HDF5 checkpoints (docs/CHECKPOINT_FORMAT.md): plain HDF5 files that h5dump / h5ls / h5py
// read, over the HDF5 C API; no torch types here, so small tools can read them too.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "r1dist/base/error.h"

namespace r1dist {

// A named fp32 array (row-major) with its shape.
struct NamedArray {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct CheckpointState {
  // Position
  int64_t step = 0;             // optimizer steps completed
  int64_t rows_consumed = 0;    // training-stream rows consumed (the data cursor)
  int64_t global_batch = 0;     // G when it was written
  int world_size = 1;
  // Identity and provenance
  std::string config_toml;      // the full resolved config
  std::string model_path;
  std::string model_hash;       // hash of the model's config.json
  std::string version;          // r1dist version
  // Training state
  std::vector<NamedArray> adapters;  // one per LoRA tensor, PEFT names
  std::vector<float> adam_m, adam_v; // flat, in lora_flat() order
  int64_t adam_step = 0;
  double lr = 0;                     // lr of the last step
  std::string schedule;              // schedule name
  std::vector<std::string> rng_states;  // one opaque byte string per rank (rank order)
  double best_eval_loss = 0;            // NaN-free; 0 with has_best = false
  bool has_best = false;
  std::map<std::string, std::string> extra;  // free-form string attributes
};

// Where an adapter tensor's AdamW moments sit in the flat vectors (adam_m, adam_v):
// values [offset, offset + length). Stored as /optimizer/layout (format 3).
struct MomentSlice {
  std::string name;
  int64_t offset = 0, length = 0;
};
// The layout of the flat moments: the adapters in order, each numel(shape) values.
std::vector<MomentSlice> moment_layout(const std::vector<NamedArray>& adapters);

// Builds the HDF5 file in memory, then writes it atomically (base/fs.h AtomicFile: PATH.tmp,
// fsync, rename to PATH, fsync the directory). A crash or a full disk at any point leaves
// either the old PATH or the complete new one, and an error naming the file.
void write_checkpoint(const std::string& path, const CheckpointState& s);
// Test hook for crash-safety tests: called by write_checkpoint with stage "data" once the
// temporary file holds data but before it is complete and renamed, on the thread that writes
// (the background writer's in training: formats/checkpoint_writer.h). nullptr = none.
using CheckpointWriteHook = void (*)(const char* stage);
void set_checkpoint_write_hook(CheckpointWriteHook hook);
// An HDF5 file that is not a checkpoint at all (metrics.h5, another program's file).
struct NotACheckpoint : Error {
  using Error::Error;
};
// Reads and validates (every field present, shapes consistent, every checksum, every value
// finite); throws Error naming the file and the field otherwise (NotACheckpoint for an HDF5
// file of another kind).
CheckpointState read_checkpoint(const std::string& path);
// True when read_checkpoint would succeed (no exception escapes).
bool checkpoint_is_valid(const std::string& path, std::string* why = nullptr);

// Checkpoints live in DIR/checkpoints/step_<8 digits>.h5.
std::string checkpoint_path(const std::string& run_dir, int64_t step);
// Every RUN_DIR/checkpoints/step_N.h5, highest step first (none checked).
std::vector<std::string> checkpoints_newest_first(const std::string& run_dir);
// The valid checkpoint with the highest step ("" when none); invalid ones are skipped
// (a warning names them).
std::string find_latest_checkpoint(const std::string& run_dir);
// Deletes all but the newest `keep` checkpoints (and stray *.tmp files); never deletes
// `protect` (the best one).
void rotate_checkpoints(const std::string& run_dir, int64_t keep, const std::string& protect = "");

}  // namespace r1dist
