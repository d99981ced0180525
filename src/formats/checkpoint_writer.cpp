#include "r1dist/formats/checkpoint_writer.h"

#include <hdf5.h>

#include <chrono>
#include <cstdio>
#include <utility>

#include "r1dist/log/log.h"

namespace r1dist {

namespace {

// Writes the checkpoint and rotates; the log line says how long it took.
void run_job(CheckpointJob& job, bool background) {
  const auto t0 = std::chrono::steady_clock::now();
  if (job.finish) job.finish(job.state);
  write_checkpoint(job.path, job.state);
  rotate_checkpoints(job.run_dir, job.keep, job.protect);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  log::info("checkpoint ", job.path, " (step ", job.state.step, ", ", secs, " s", background ? " in the background" : "",
            ")");
}

}  // namespace

bool hdf5_is_threadsafe() {
  hbool_t ts = 0;
  return H5is_library_threadsafe(&ts) >= 0 && ts;
}

CheckpointWriter::CheckpointWriter() : CheckpointWriter(true) {}

CheckpointWriter::CheckpointWriter(bool background) : background_(background) {
  if (background_ && !hdf5_is_threadsafe()) {
    background_ = false;
    log::info("checkpoints are written synchronously: this HDF5 library is not thread-safe");
  }
}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    log::error(e.what());
  }
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void CheckpointWriter::write(CheckpointJob job) {
  wait();
  if (!background_) {
    run_job(job, false);
    return;
  }
  thread_ = std::thread([this, job = std::move(job)]() mutable {
    try {
      run_job(job, true);
    } catch (...) {
      error_ = std::current_exception();  // read after the join
    }
  });
}

}  // namespace r1dist
