// TensorBoard event files of a run (docs/METRICS_FORMAT.md, "TensorBoard events"): the
// scalars of metrics.h5, one Event per step row and per eval row, tagged
// train/<column of /steps> and eval/<column of /evals>, and of its /eval group (the final
// evaluation), tagged suite/<attribute>. A file is a sequence of TFRecords
// (length, masked CRC-32C of the length, data, masked CRC-32C of the data) holding Event
// protobufs: first the file version "brain.Event:2", then Summaries of simple_value scalars.
// Torch-free; written through base/fs.h (AppendFile).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "r1dist/formats/metrics.h"
#include "r1dist/quality/eval_summary.h"

namespace r1dist {

namespace tensorboard {

// CRC-32C (Castagnoli) and TFRecord's mask of it: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);
// One TFRecord holding `data`.
std::string frame(std::string_view data);

struct Scalar {
  std::string tag;
  float value = 0;
};
// One decoded Event: the file version, or a step's scalars.
struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // empty unless this is the file-version event
  std::vector<Scalar> scalars;
};
std::string encode(const Event& e);

// The records of an event file's bytes, each decoded, with its framed bytes. Reading stops at
// a record cut short at the end (a writer killed mid-write); `error` names what stopped it
// early otherwise (a CRC mismatch, a record that does not decode), with its byte offset.
struct Record {
  Event event;
  std::string framed;
};
std::vector<Record> read_records(std::string_view bytes, const std::string& where, std::string* error);

}  // namespace tensorboard

// DIR (output.dir/tensorboard) with one event file that grows while the run trains. A fresh
// run starts DIR empty; a resumed one (resume = true) keeps the events of steps up to
// resume_step from the files already there and drops the later ones (written after the
// checkpoint: they are trained again), the way metrics.h5 drops its rows; the kept events
// go into a new file, and the new directory replaces the old one atomically (replace_dir),
// so that every reader, not only TensorBoard, sees each step once. Each append is one
// Event, written and fsynced at once, so a running `tensorboard --logdir` shows it.
class TensorBoardWriter {
 public:
  TensorBoardWriter(const std::string& dir, bool resume, int64_t resume_step);
  ~TensorBoardWriter();
  void append(const StepRecord& r);
  void append(const EvalRecord& r);
  // The final evaluation (eval.suite, metrics.h5 /eval) at `step`, tagged suite/<attribute>.
  void append(int64_t step, const EvalSummary& s);
  const std::string& file() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1dist
