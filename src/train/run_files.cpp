#include "r1dist/train/run_files.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include "r1dist/base/error.h"
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
  j["world_size"] = world;
  j["global_batch"] = id.global_batch;
  j["lr"] = cfg.train.lr;
  j["steps"] = cfg.train.steps;
  j["lora_r"] = cfg.lora.r;
  j["lora_alpha"] = cfg.lora.alpha;
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
  const std::string path = cfg.output.dir + "/run.json";
  std::ofstream f(path + ".tmp", std::ios::trunc);
  f << j.dump(1) << "\n";
  f.close();
  check(static_cast<bool>(f), "cannot write " + path + ".tmp");
  check(std::rename((path + ".tmp").c_str(), path.c_str()) == 0, "cannot rename " + path + ".tmp");
}

std::unique_ptr<MetricsWriter> open_run_metrics(const Config& cfg, const Dataset& data, int64_t resume_step,
                                                int world) {
  auto m = std::make_unique<MetricsWriter>(cfg.output.dir + "/metrics.h5", resume_step > 0, resume_step);
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

std::string export_adapter(const Config& cfg, const Qwen2Model& model) {
  PeftAdapterConfig pc;
  pc.spec = LoraSpec{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.rslora};
  pc.targets = cfg.lora.targets;
  pc.base_model = cfg.model.path;
  const std::string dir = cfg.output.dir + "/adapter";
  save_peft_adapter(model.lora(), dir, pc);
  return dir;
}

}  // namespace r1dist
