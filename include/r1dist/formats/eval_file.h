// The /eval group of an HDF5 file (docs/EVAL.md): one EvalSummary, numbers
// as attributes of /eval and /eval/generations/<index>-<prompt slug>, texts as string
// datasets (a generation's prompt an attribute of its group), so h5dump
// shows everything. Written into a run's metrics.h5 (or any file) by replacing the whole
// file atomically: the file is copied, /eval replaced in the copy, the copy renamed over
// the original, so a crash leaves the old file or the new one, never a mix.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "r1dist/formats/metrics.h"
#include "r1dist/quality/eval_summary.h"

namespace r1dist {

// Creates `path` when absent; otherwise keeps everything in it except a previous /eval.
void write_eval_group(const std::string& path, const EvalSummary& s);
// The /eval group of `path`; nullopt when the file has none. Throws Error on a damaged one.
std::optional<EvalSummary> read_eval_group(const std::string& path);
// The numbers of /eval that `s` measured, named as their attributes: loss, perplexity,
// counts, the collapse flag; drift (kl, top1_agreement) only when it has an adapter, MCQ
// (mcq_accuracy and its interval) only when it scored items. `r1dist metrics --table eval`
// prints them and TensorBoard shows them as suite/<name>.
std::vector<MetricValue> eval_group_scalars(const EvalSummary& s);

}  // namespace r1dist
