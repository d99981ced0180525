// HDF5 checkpoints and metrics (docs/CHECKPOINT_FORMAT.md). Both are plain HDF5 files that
// h5dump / h5ls / h5py read. Implemented over the HDF5 C API in src/io/checkpoint.cpp and
// src/io/metrics.cpp; no torch types here, so the files can be read by small tools too.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

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

// Writes atomically: PATH.tmp, fsync, rename to PATH, fsync the directory. A crash at any
// point leaves either the old PATH or the complete new one.
void write_checkpoint(const std::string& path, const CheckpointState& s);
// Test hook for crash-safety tests: called by write_checkpoint with stage "data" once the
// temporary file holds data but before it is complete and renamed. nullptr = none.
using CheckpointWriteHook = void (*)(const char* stage);
void set_checkpoint_write_hook(CheckpointWriteHook hook);
// Reads and validates (every field present, shapes consistent); throws Error naming the
// file and the field otherwise.
CheckpointState read_checkpoint(const std::string& path);
// True when read_checkpoint would succeed (no exception escapes).
bool checkpoint_is_valid(const std::string& path, std::string* why = nullptr);

// Checkpoints live in DIR/checkpoints/step_<8 digits>.h5.
std::string checkpoint_path(const std::string& run_dir, int64_t step);
// The valid checkpoint with the highest step ("" when none); invalid ones are skipped
// (a warning names them).
std::string find_latest_checkpoint(const std::string& run_dir);
// Deletes all but the newest `keep` checkpoints (and stray *.tmp files); never deletes
// `protect` (the best one).
void rotate_checkpoints(const std::string& run_dir, int64_t keep, const std::string& protect = "");

// Metrics: one HDF5 file per run (DIR/metrics.h5) with two extendible compound tables,
// /steps and /evals, appended and flushed row by row, so that a crash keeps every
// completed row. The writer uses SWMR so another process can read while a run writes.
struct StepRecord {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0;     // loss tokens in the global batch
  double step_time_s = 0, tokens_per_s = 0;
  double mem_gb = 0;      // peak device memory (0 on CPU)
};
struct EvalRecord {
  int64_t step = 0;
  double eval_loss = 0, kl = 0;  // kl: mean KL(base || tuned) per token
  int64_t eval_tokens = 0;
};

class MetricsWriter {
 public:
  // Creates PATH, or opens it to continue a resumed run: rows with step > resume_step
  // (written after the checkpoint being resumed) are dropped first.
  MetricsWriter(const std::string& path, bool resume, int64_t resume_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void append(const StepRecord& r);
  void append(const EvalRecord& r);
  // Counters (e.g. "rows_skipped"); overwritten each call. Stored as rows of the /attrs
  // table, not HDF5 attributes (a SWMR writer cannot create attributes).
  void set_attr(const std::string& name, int64_t value);
  void set_attr(const std::string& name, const std::string& value);

 private:
  struct Impl;
  Impl* impl_;
};

// Reads a metrics file (also while a writer has it open).
struct MetricsData {
  std::vector<StepRecord> steps;
  std::vector<EvalRecord> evals;
  std::map<std::string, std::string> attrs;  // integer attributes as decimal text
};
MetricsData read_metrics(const std::string& path);

}  // namespace r1dist
