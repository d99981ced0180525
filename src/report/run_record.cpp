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
  std::ifstream f(run_json);
  if (!f) throw UsageError("report: " + dir + " has no run.json (not a run directory, or the run never started)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
    r.name = j.at("name").get<std::string>();
    r.model_path = j.at("model_path").get<std::string>();
    r.model_hash = j.value("model_hash", "");
    r.lr = j.value("lr", 0.0);
    r.steps = j.value("steps", int64_t(0));
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("report: " + run_json + ": " + e.what());
  }
  r.base = r.steps == 0;
  if (::access(metrics.c_str(), R_OK) != 0) throw UsageError("report: " + dir + " has no metrics.h5");
  r.metrics = read_metrics(metrics);
  r.eval = read_eval_group(metrics);
  return r;
}

}  // namespace r1dist
