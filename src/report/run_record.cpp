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
  if (::access(metrics.c_str(), R_OK) != 0) throw UsageError("report: " + dir + " has no metrics.h5");
  r.metrics = read_metrics(metrics);
  r.eval = read_eval_group(metrics);
  return r;
}

}  // namespace r1dist
