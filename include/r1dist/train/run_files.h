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

// The adapter's README.md, a model card as PEFT writes one: YAML front matter (base_model,
// library_name: peft, tags), then the base model, the data file and its fingerprint, the
// final and best held-out evaluation of `evals` (step 0, the base model's, is not the
// adapter's), the full config (TOML) and the r1dist version.
std::string adapter_model_card(const Config& cfg, const RunIdentity& id, const std::vector<EvalRecord>& evals);

// With output.tensorboard: output.dir/tensorboard, fresh (resume_step = 0) or keeping the
// events of steps up to resume_step; nullptr when the key is off.
std::unique_ptr<TensorBoardWriter> open_run_tensorboard(const Config& cfg, int64_t resume_step);

// output.dir/adapter in the PEFT format, written atomically (a staged directory renamed into
// place): base_model_name_or_path is cfg.model.base_model_id() (a hub id, so PEFT finds the
// base anywhere), the manifest records the base: the weights' fingerprint, quant.mode and
// model.dtype (read back by model/saved_adapter.h), and the step the run had reached
// ("step"); README.md is the model card; returns the directory.
std::string export_adapter(const Config& cfg, const Qwen2Model& model, const RunIdentity& id, int64_t step,
                           const std::vector<EvalRecord>& evals);

}  // namespace r1dist
