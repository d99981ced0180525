#include "r1dist/train/run_files.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

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
  j["rows_fingerprint"] = data.rows_fingerprint;
  j["rows_in_file"] = data.load.rows_in_file;
  j["rows_skipped"] = data.load.skipped;
  j["rows_truncated"] = data.truncated;
  j["rows_dropped"] = data.dropped;
  j["rows_without_loss"] = data.without_loss;
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
  auto m = std::make_unique<MetricsWriter>(path, continued, resume_step, cfg.to_toml());
  if (resume_step > 0 && !continued) m->set_counter("history_starts_at_step", resume_step);
  for (const auto& c : overridden) {
    const std::string name = ("resume_anyway." + std::to_string(resume_step) + "." + c.key).substr(0, 63);
    m->set_attr(name, (c.was + " -> " + c.now).substr(0, 255));
  }
  m->set_attr("name", cfg.model.display_name());
  m->set_counter("rows_in_file", data.load.rows_in_file);
  m->set_counter("rows_skipped", data.load.skipped);
  m->set_counter("rows_truncated", data.truncated);
  m->set_counter("rows_dropped", data.dropped);
  m->set_counter("rows_without_loss", data.without_loss);
  m->set_counter("train_rows", int64_t(data.train.size()));
  m->set_counter("eval_rows", int64_t(data.eval.size()));
  m->set_counter("world_size", int64_t(world));
  return m;
}

std::string adapter_model_card(const Config& cfg, const RunIdentity& id, const std::vector<EvalRecord>& evals) {
  const std::string base = cfg.model.base_model_id();
  auto q = [](const std::string& s) { return nlohmann::json(s).dump(); };  // a YAML double-quoted scalar
  std::ostringstream md;
  md << "---\nbase_model: " << q(base) << "\nlibrary_name: peft\ntags:\n- " << q("base_model:adapter:" + base)
     << "\n- lora\n- transformers\n- r1dist\npipeline_tag: text-generation\n---\n\n";
  md << "# " << cfg.model.display_name() << ": LoRA adapter\n\n";
  md << "A LoRA adapter (PEFT format) for `" << base << "`, trained with r1dist " << R1DIST_VERSION << ".\n\n";
  md << "## Base model\n\n- id: `" << base << "` (adapter_config.json `base_model_name_or_path`)\n"
     << "- trained on the directory `" << cfg.model.path << "` (config.json hash `" << id.model_hash
     << "`, weights fingerprint `" << id.weights << "`)\n"
     << "- quantisation while training: " << to_string(cfg.quant.mode) << "\n\n";
  md << "## Data\n\n- file: `" << cfg.data.path << "`\n- fingerprint of the tokenized rows: `" << id.rows_fingerprint
     << "`\n\n";
  md << "## Evaluation (held-out rows)\n\n";
  const EvalRecord* final_eval = nullptr;
  const EvalRecord* best = nullptr;
  for (const auto& e : evals) {
    if (e.step <= 0) continue;  // the base model
    final_eval = &e;
    if (!best || e.eval_loss < best->eval_loss) best = &e;
  }
  if (!final_eval) {
    md << "No held-out evaluation of the adapter ran (eval.every_steps = 0 or no eval rows).\n\n";
  } else {
    char row[256];
    md << "| | step | eval loss (nats/token) | KL(base \\|\\| tuned) (nats/token) | eval tokens |\n|---|---|---|---|---|\n";
    for (auto [label, e] : {std::pair{"final", final_eval}, std::pair{"best", best}}) {
      std::snprintf(row, sizeof row, "| %s | %lld | %.6f | %.6g | %lld |\n", label, static_cast<long long>(e->step),
                    e->eval_loss, e->kl, static_cast<long long>(e->eval_tokens));
      md << row;
    }
    md << "\n";
  }
  md << "## Use\n\n```python\nfrom peft import AutoPeftModelForCausalLM\n"
     << "model = AutoPeftModelForCausalLM.from_pretrained(\"PATH/TO/THIS/FOLDER\")\n```\n\n";
  md << "## Training config\n\n```toml\n" << cfg.to_toml() << (cfg.to_toml().empty() || cfg.to_toml().back() == '\n' ? "" : "\n")
     << "```\n\n";
  md << "## Framework versions\n\n- r1dist " << R1DIST_VERSION << "\n";
  return md.str();
}

std::string export_adapter(const Config& cfg, const Qwen2Model& model, const RunIdentity& id, int64_t step,
                           const std::vector<EvalRecord>& evals) {
  PeftAdapterConfig pc;
  pc.spec = LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora};
  pc.targets = cfg.lora.targets;
  pc.base_model = cfg.model.base_model_id();
  const std::string dir = cfg.output.dir + "/adapter";
  // What the base was: its weights, and how they were loaded (model/saved_adapter.h reads it back).
  ManifestExtra extra{{"base_quant", to_string(cfg.quant.mode)}, {"base_dtype", to_string(cfg.model.dtype)}};
  if (!id.weights.empty()) extra["base_fingerprint"] = id.weights;
  extra["step"] = std::to_string(step);
  save_peft_adapter(model.lora(), dir, pc, extra, adapter_model_card(cfg, id, evals));
  return dir;
}

}  // namespace r1dist
