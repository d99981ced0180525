// r1dist score: per-sequence mean NLL and per-token log-probs, sequences spread over ranks.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

#include "r1dist/base/json.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_flags.h"
#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/log/log.h"
#include "r1dist/model/build_model.h"
#include "r1dist/tensor/device.h"

namespace r1dist {

namespace {

using nlohmann::json;

std::vector<std::vector<int64_t>> read_id_file(const std::string& path, int64_t vocab) {
  const Json doc = read_json_file(path);
  const JsonView j(doc, "score --ids " + path);
  const auto all = j.elements();
  if (all.empty()) j.fail("holds no sequences: give a non-empty JSON array of token-id arrays");
  std::vector<std::vector<int64_t>> seqs;
  for (size_t i = 0; i < all.size(); ++i) {
    const auto s = all[i].elements();
    const std::string where = "score: " + path + ": sequence " + std::to_string(i);
    if (s.size() < 2) throw UsageError(where + " has " + std::to_string(s.size()) + " tokens; scoring needs at least 2");
    std::vector<int64_t> ids;
    for (size_t k = 0; k < s.size(); ++k) {
      const int64_t id = s[k].integer();
      if (id < 0 || id >= vocab)
        throw UsageError(where + ", position " + std::to_string(k) + ": id " + std::to_string(id) +
                         " is outside the model's vocabulary [0, " + std::to_string(vocab) + ")");
      ids.push_back(id);
    }
    seqs.push_back(std::move(ids));
  }
  return seqs;
}

}  // namespace

int cmd_score(int argc, char** argv) {
  Args a("r1dist score",
         "Score token-id sequences: prints JSON on stdout with each sequence's mean negative log-likelihood "
         "(natural log, over positions 1..n-1) and its per-token log-probs. Under mpirun the sequences are "
         "spread over the ranks.");
  declare_model_flags(a, /*adapter_flag=*/false);
  a.option_str("ids", "JSON file: an array of token-id arrays")
      .flag("no-logprobs", "print only the mean NLL of each sequence");
  if (!a.parse(argc, argv)) return 0;
  const auto& pg = dist_group();
  // The model part of a run config (the flags as generate and eval read them): the base
  // model, unquantised unless --quant or --cfg says otherwise, no adapters.
  const Config run = config_from_flags(a, QuantMode::none);
  const auto ids_path = a.required("ids");
  const auto device =
      a.has("device") ? parse_device(a.str("device"), pg.local_rank) : resolve_device(run.model.device, pg.local_rank);
  const auto dtype = run.model.dtype == ComputeDtype::bf16 ? at::kBFloat16 : at::kFloat;
  const bool with_logprobs = !a.has("no-logprobs");
  const auto& dir = run.model.path;

  const auto cfg = read_qwen2_config(dir);
  const auto seqs = read_id_file(ids_path, cfg.vocab_size);
  log::info("score: loading ", dir, " (", c10::toString(dtype), " on ", device.str(), ")");
  const auto model = build_model(run, device, WithAdapters::no);

  json mine = json::array();
  at::NoGradGuard no_grad;
  for (size_t i = pg.rank; i < seqs.size(); i += pg.world) {
    auto ids = at::tensor(seqs[i], at::kLong).unsqueeze(0);
    auto logits = model.forward(ids).to(at::kFloat);                           // (1, T, V)
    auto logp = at::log_softmax(logits.slice(1, 0, -1), -1);                   // (1, T-1, V)
    auto target = ids.slice(1, 1).to(device).unsqueeze(-1);                    // (1, T-1, 1)
    auto tok = logp.gather(-1, target).squeeze(-1).squeeze(0).to(at::kDouble).cpu();  // (T-1)
    json e = {{"index", i}, {"n_tokens", seqs[i].size()},
              {"mean_nll", -tok.mean().item<double>()}};
    if (with_logprobs) {
      std::vector<double> v(tok.data_ptr<double>(), tok.data_ptr<double>() + tok.numel());
      e["logprobs"] = v;
    }
    mine.push_back(std::move(e));
  }

  const auto parts = dist_gather_strings(mine.dump());
  if (pg.rank == 0) {
    std::vector<json> all(seqs.size());
    for (const auto& p : parts)
      for (auto& e : json::parse(p)) all[e["index"].get<size_t>()] = e;
    json out = {{"model", dir}, {"dtype", c10::toString(dtype)}, {"device", device.str()},
                {"world_size", pg.world}, {"sequences", all}};
    std::cout << out.dump(1) << std::endl;
  }
  return 0;
}

}  // namespace r1dist
