// Checkpoint writes off the training step's critical path. The caller snapshots the state
// into host memory (a CheckpointState, which CheckpointJob::finish may complete from the
// caller's copies) and hands it over; one background thread builds the HDF5 file, writes it
// atomically (write_checkpoint: PATH.tmp, fsync, rename) and rotates the old checkpoints. At
// most one write is in flight: the next one waits for it, so host memory holds one snapshot
// at a time. An in-flight checkpoint is PATH.tmp, which find_latest_checkpoint, --resume and
// `checkpoint verify` never take for a checkpoint.
//
// Errors: a write that fails in the background (a full disk, an unwritable directory) is
// rethrown, with the text write_checkpoint gives (the file's path in it), by the next
// write() or wait(). The destructor waits for the write in flight (an exception unwinding
// the trainer never abandons it) and logs its error, if any.
//
// The background thread needs an HDF5 built thread-safe (the metrics and TensorBoard writers
// keep writing on the main thread meanwhile): checked at run time (H5is_library_threadsafe);
// without it every write happens in write() itself, as before, and the log says so once.
#pragma once
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <thread>

#include "r1dist/formats/checkpoint.h"

namespace r1dist {

// Whether the HDF5 library in this process is built thread-safe.
bool hdf5_is_threadsafe();

struct CheckpointJob {
  std::string path;       // checkpoint_path(run_dir, state.step)
  CheckpointState state;  // the snapshot
  std::string run_dir;    // rotation: rotate_checkpoints(run_dir, keep, protect) after the write
  int64_t keep = 0;
  std::string protect;    // the best checkpoint, never rotated away
  // Run first, where the write runs: completes `state` from copies the caller made (a
  // snapshot taken as a few flat copies is split into the state's arrays off the caller's path).
  std::function<void(CheckpointState&)> finish;
};

class CheckpointWriter {
 public:
  // background = false: every write happens in write() (synchronous). By default, in the
  // background when HDF5 is thread-safe.
  CheckpointWriter();
  explicit CheckpointWriter(bool background);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Waits for the write in flight (rethrowing its error), then writes `job`: started on the
  // background thread, or done here. Logs "checkpoint PATH (step N, X s[ in the background])"
  // once the file is in place.
  void write(CheckpointJob job);
  // Waits until no write is in flight; rethrows the error of a failed one (once).
  void wait();
  bool background() const { return background_; }

 private:
  bool background_;
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace r1dist
