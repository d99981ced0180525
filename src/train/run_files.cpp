#include "r1dist/train/run_files.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include <sys/stat.h>

#include <algorithm>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/log/log.h"
#include "r1dist/peft/peft_format.h"

namespace r1dist {

void write_run_json(const Config& cfg, const std::string& config_path, const RunIdentity& id, const Dataset& data,
                    int world) {
  nlohmann::json j;
  j["r1dist_version"] = R1DIST_VERSION;
  j["name"] = cfg.model.display_name();
  j["config_path"] = config_path;
  j["model_path"] = cfg.model.path;
  j["model_hash"] = id.model_hash;
  j["weights_fingerprint"] = id.weights;
  j["world_size"] = world;
  j["global_batch"] = id.global_batch;
  j["lr"] = cfg.train.lr;
  j["steps"] = cfg.train.steps;
  j["lora_r"] = cfg.lora.r;
  j["lora_alpha"] = cfg.lora.alpha;
  // Further settings a sweep may vary; `r1dist report` shows and plots those that differ
  // (report/run_record.h setting_keys(); files without them stay readable).
  j["lora_dropout"] = cfg.lora.dropout;
  j["warmup_steps"] = cfg.train.warmup_steps;
  j["weight_decay"] = cfg.train.weight_decay;
  j["max_seq_len"] = cfg.data.max_seq_len;
  j["n_samples"] = cfg.data.n_samples;
  j["quant"] = to_string(cfg.quant.mode);
  j["data_path"] = cfg.data.path;
  j["dataset_fingerprint"] = data.fingerprint;
  j["rows_in_file"] = data.load.rows_in_file;
  j["rows_skipped"] = data.load.skipped;
  j["rows_truncated"] = data.truncated;
  j["rows_dropped"] = data.dropped;
  std::vector<int64_t> train_rows, eval_rows;
  for (const auto& e : data.train) train_rows.push_back(e.row);
  for (const auto& e : data.eval) eval_rows.push_back(e.row);
  j["train_row_ids"] = train_rows;
  j["eval_row_ids"] = eval_rows;
  write_file_atomic(cfg.output.dir + "/run.json", j.dump(1) + "\n");
}

namespace {

// Why the run's metrics.h5 cannot continue a resume at `step` ("" when it can).
std::string metrics_problem(const std::string& path, int64_t step) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return path + " is missing";
  try {
    const auto m = read_metrics(path);
    int64_t last = 0;
    for (const auto& r : m.steps) last = std::max(last, r.step);
    if (last < step)
      return path + " holds steps up to " + std::to_string(last) + ", the checkpoint is at step " + std::to_string(step);
  } catch (const std::exception& e) {
    return path + " cannot be read (" + e.what() + ")";
  }
  return "";
}

}  // namespace

std::unique_ptr<TensorBoardWriter> open_run_tensorboard(const Config& cfg, int64_t resume_step) {
  if (!cfg.output.tensorboard) return nullptr;
  auto tb = std::make_unique<TensorBoardWriter>(cfg.output.dir + "/tensorboard", resume_step > 0, resume_step);
  log::info("tensorboard: event file ", tb->file(), " (tensorboard --logdir ", cfg.output.dir, "/tensorboard)");
  return tb;
}

std::unique_ptr<MetricsWriter> open_run_metrics(const Config& cfg, const Dataset& data, int64_t resume_step,
                                                int world, const std::vector<ConfigChange>& overridden,
                                                const std::string& anyway) {
  const std::string path = cfg.output.dir + "/metrics.h5";
  bool continued = resume_step > 0;
  if (continued) {
    if (const auto problem = metrics_problem(path, resume_step); !problem.empty()) {
      const bool accepted = anyway == "all" || ("," + anyway + ",").find(",metrics,") != std::string::npos;
      if (!accepted)
        throw UsageError("cannot resume at step " + std::to_string(resume_step) + ": " + problem +
                         ", so the history of steps 1-" + std::to_string(resume_step) +
                         " would be lost without a trace\nHINT: put the run's metrics.h5 back, or continue with "
                         "--resume-anyway metrics: a new metrics.h5 whose history starts at step " +
                         std::to_string(resume_step) + " (recorded in its attributes)");
      struct stat st{};
      if (::stat(path.c_str(), &st) == 0) {
        const std::string aside = path + ".unreadable-at-step-" + std::to_string(resume_step);
        rename_path(path, aside);
        log::warn("resume: ", problem, "; kept as ", aside);
      }
      log::warn("resume: a new metrics.h5 starts at step ", resume_step, " (--resume-anyway metrics)");
      continued = false;
    }
  }
  auto m = std::make_unique<MetricsWriter>(path, continued, resume_step);
  if (resume_step > 0 && !continued) m->set_attr("history_starts_at_step", resume_step);
  for (const auto& c : overridden) {
    const std::string name = ("resume_anyway." + std::to_string(resume_step) + "." + c.key).substr(0, 63);
    m->set_attr(name, (c.was + " -> " + c.now).substr(0, 255));
  }
  m->set_attr("name", cfg.model.display_name());
  m->set_attr("rows_in_file", data.load.rows_in_file);
  m->set_attr("rows_skipped", data.load.skipped);
  m->set_attr("rows_truncated", data.truncated);
  m->set_attr("rows_dropped", data.dropped);
  m->set_attr("train_rows", int64_t(data.train.size()));
  m->set_attr("eval_rows", int64_t(data.eval.size()));
  m->set_attr("world_size", int64_t(world));
  return m;
}

std::string export_adapter(const Config& cfg, const Qwen2Model& model, const std::string& base_fingerprint) {
  PeftAdapterConfig pc;
  pc.spec = LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora};
  pc.targets = cfg.lora.targets;
  pc.base_model = cfg.model.path;
  const std::string dir = cfg.output.dir + "/adapter";
  save_peft_adapter(model.lora(), dir, pc, base_fingerprint);
  return dir;
}

bool adapter_is_complete(const std::string& dir) {
  bool has_manifest = false;
  return is_dir(dir) && check_manifest(dir, &has_manifest).empty() && has_manifest;
}

}  // namespace r1dist
