// The files a training run writes into output.dir besides its checkpoints: run.json (what
// it trained on), metrics.h5 (opened with the data counters as attributes), the TensorBoard
// event files (output.tensorboard) and the PEFT adapter at the end. Rank 0 calls these.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/data/dataset.h"
#include "r1dist/formats/metrics.h"
#include "r1dist/formats/tensorboard.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/train/train_state.h"

namespace r1dist {

// output.dir/run.json: provenance, data counts and the row ids of the train and eval split
// (rewritten on resume).
void write_run_json(const Config& cfg, const std::string& config_path, const RunIdentity& id, const Dataset& data,
                    int world);

// output.dir/metrics.h5, fresh (resume_step = 0) or continued after resume_step. A resume
// whose metrics.h5 is missing, unreadable or behind the checkpoint refuses, naming why,
// unless `anyway` ("all" or a key list) holds "metrics": then the old file is moved aside
// and a new history starts at resume_step (attribute history_starts_at_step). Differences
// accepted by --resume-anyway are recorded as attributes resume_anyway.<step>.<key>.
std::unique_ptr<MetricsWriter> open_run_metrics(const Config& cfg, const Dataset& data, int64_t resume_step,
                                                int world, const std::vector<ConfigChange>& overridden = {},
                                                const std::string& anyway = "");

// With output.tensorboard: output.dir/tensorboard, fresh (resume_step = 0) or keeping the
// events of steps up to resume_step; nullptr when the key is off.
std::unique_ptr<TensorBoardWriter> open_run_tensorboard(const Config& cfg, int64_t resume_step);

// output.dir/adapter in the PEFT format, written atomically (a staged directory renamed into
// place), its manifest recording the base weights' fingerprint; returns the directory.
std::string export_adapter(const Config& cfg, const Qwen2Model& model, const std::string& base_fingerprint);
// Whether DIR holds an adapter r1dist exported completely (its manifest present and every
// file as the manifest records it).
bool adapter_is_complete(const std::string& dir);

}  // namespace r1dist
