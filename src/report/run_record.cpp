#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/report/run_record.h"

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

#include "r1dist/base/error.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/manifest.h"

namespace r1dist {

double RunRecord::loss() const {
  if (eval) return eval->loss;
  if (!metrics.evals.empty()) return metrics.evals.back().eval_loss;
  return std::numeric_limits<double>::quiet_NaN();
}

double RunRecord::setting(const std::string& key) const {
  const auto it = settings.find(key);
  return it == settings.end() ? std::numeric_limits<double>::quiet_NaN() : it->second;
}

const std::vector<SettingKey>& setting_keys() {
  static const std::vector<SettingKey> keys = {
      {"lr", "lr", true},
      {"steps", "steps", false},
      {"lora_r", "LoRA r", false},
      {"lora_alpha", "LoRA alpha", false},
      {"lora_dropout", "LoRA dropout", false},
      {"global_batch", "global batch", false},
      {"warmup_steps", "warmup steps", false},
      {"weight_decay", "weight decay", false},
      {"max_seq_len", "max seq len", false},
      {"n_samples", "n_samples (0 = all)", false},
  };
  return keys;
}

double RunRecord::kl() const {
  if (base) return 0.0;
  if (eval && eval->has_drift) return eval->kl;
  if (!metrics.evals.empty()) return metrics.evals.back().kl;
  return std::numeric_limits<double>::quiet_NaN();
}

RunRecord read_run(const std::string& dir) {
  RunRecord r;
  r.dir = dir;
  const std::string run_json = dir + "/run.json", metrics = dir + "/metrics.h5";
  if (!is_file(run_json))
    throw UsageError("report: " + dir + " has no run.json (not a run directory, or the run never started)");
  const Json doc = read_json_file(run_json);
  const JsonView j(doc, run_json);
  r.name = j["name"].string();
  r.model_path = j["model_path"].string();
  r.model_hash = j["model_hash"].string_or("");
  r.weights_fingerprint = j["weights_fingerprint"].string_or("");
  r.lr = j["lr"].number_or(0.0);
  r.steps = j["steps"].integer_or(0);
  r.base = r.steps == 0;
  for (const auto& k : setting_keys())
    if (j[k.key].present()) r.settings[k.key] = j[k.key].number();
  r.data_path = j["data_path"].string_or("");
  if (j["eval_row_ids"].present())
    for (const auto& id : j["eval_row_ids"].elements()) r.eval_rows.push_back(id.integer());
  if (::access(metrics.c_str(), R_OK) != 0) throw UsageError("report: " + dir + " has no metrics.h5");
  try {
    r.metrics = read_metrics(metrics);
    r.eval = read_eval_group(metrics);
  } catch (const std::exception& e) {
    throw UsageError("report: " + metrics + " cannot be read: " + e.what());
  }
  if (const auto it = r.metrics.attrs.find("stop_reason"); it != r.metrics.attrs.end()) r.stop_reason = it->second;
  if (!r.base) {
    const int64_t done = r.metrics.steps.empty() ? 0 : r.metrics.steps.back().step;
    bool has_manifest = false;
    ManifestExtra extra;
    const bool adapter = is_dir(dir + "/adapter") &&
                         check_manifest(dir + "/adapter", &has_manifest, &extra).empty() && has_manifest;
    const int64_t exported = adapter_exported_at(dir + "/adapter");  // -1: also an export that predates the record
    if (done < r.steps && r.stop_reason.empty())
      r.incomplete = "stopped at step " + std::to_string(done) + " of " + std::to_string(r.steps);
    else if (!adapter)
      r.incomplete = is_dir(dir + "/adapter") ? "its adapter is incomplete or damaged" : "no adapter exported";
    else if (extra.count("step") && exported != done)
      r.incomplete = "its adapter is from step " + std::to_string(exported) + ", the run reached step " +
                     std::to_string(done);
  }
  return r;
}

bool same_held_out(const RunRecord& run, const RunRecord& base) {
  // Records written before run.json held the row ids cannot be checked: taken as comparable.
  if (run.eval_rows.empty() || base.eval_rows.empty()) return true;
  return run.eval_rows == base.eval_rows && run.data_path == base.data_path;
}

}  // namespace r1dist
