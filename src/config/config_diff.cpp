#include "r1dist/config/config_diff.h"

#include <charconv>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "r1dist/base/error.h"
#include "r1dist/config/config.h"

namespace r1dist {

namespace {

void flatten(const toml::table& t, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (const auto& [k, node] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      flatten(*sub, key, out);
      continue;
    }
    if (const auto* d = node.as_floating_point()) {
      // The shortest text that reads back as the same double (0.0002, not 0.00020000000000000001).
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof buf, d->get());
      out[key] = std::string(buf, r.ptr);
      continue;
    }
    std::ostringstream os;
    node.visit([&](const auto& v) { os << v; });
    out[key] = os.str();
  }
}

std::map<std::string, std::string> flat(const std::string& text, const char* which) {
  std::map<std::string, std::string> out;
  try {
    flatten(toml::parse(text), "", out);
  } catch (const toml::parse_error& e) {
    throw Error(std::string("comparing configs: the ") + which + " config does not parse: " +
                std::string(e.description()));
  }
  return out;
}

}  // namespace

bool key_changes_math(const std::string& key) {
  static const std::set<std::string> kMoveOnly = {"data.path", "data.threads", "data.packing", "train.micro_batch",
                                                  "train.grad_accum", "train.checkpointing",
                                                  "train.keep_layers", "train.recompute_mlp_layers",
                                                  "train.offload_layers", "train.offload_recomputed_inputs", "train.offload_attention",
                                                  "train.offload",
                                                  "train.memory_budget_gb"};
  if (kMoveOnly.count(key)) return false;
  if (key == "model.dtype") return true;
  for (const char* section : {"lora.", "quant.", "data.", "train."})
    if (key.rfind(section, 0) == 0) return true;
  return false;
}

std::vector<ConfigChange> layout_config_changes(const std::string& before_toml, const std::string& now_toml) {
  static const std::vector<std::string> kLayout = {"data.packing",        "train.micro_batch", "train.grad_accum",
                                                   "train.checkpointing", "train.keep_layers", "train.recompute_mlp_layers",
                                                   "train.memory_budget_gb"};
  static const std::map<std::string, std::string> kBeforeTheKey = {
      {"data.packing", "false"}, {"train.keep_layers", "0"}, {"train.recompute_mlp_layers", "0"},
      {"train.memory_budget_gb", "0"}};
  const auto a = flat(before_toml, "checkpoint's"), b = flat(now_toml, "current");
  std::vector<ConfigChange> out;
  for (const auto& k : kLayout) {
    const auto ia = a.find(k), ib = b.find(k);
    if (ib == b.end()) continue;
    std::string was;
    if (ia != a.end()) was = ia->second;
    else if (const auto old = kBeforeTheKey.find(k); old != kBeforeTheKey.end()) was = old->second;
    else continue;
    if (was != ib->second) out.push_back({k, was, ib->second});
  }
  return out;
}

void check_resume_anyway(const std::string& keys) {
  if (keys == "all") return;
  std::set<std::string> known = {"model", "data", "metrics"};
  for (const auto& d : config_key_docs()) known.insert(d.key);
  std::stringstream ss(keys);
  for (std::string k; std::getline(ss, k, ',');) {
    if (k.empty() || known.count(k)) continue;
    if (k == "global batch" || k == "global_batch")
      throw UsageError("--resume-anyway: the global batch cannot be overridden (the batch plan depends on it)");
    const std::string hint = suggest_config_key(k);
    throw UsageError("--resume-anyway: unknown key '" + k + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                     "\nHINT: give all, or config keys (train.lr) and model, data, metrics, separated by commas");
  }
}

namespace {

// The keys of either config that `counts` accepts, whose values differ.
template <typename Pred>
std::vector<ConfigChange> changes(const std::string& before_toml, const std::string& now_toml, const char* before,
                                  Pred counts) {
  const auto a = flat(before_toml, before), b = flat(now_toml, "current");
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  std::vector<ConfigChange> out;
  for (const auto& k : keys) {
    if (!counts(k)) continue;
    const auto ia = a.find(k), ib = b.find(k);
    const std::string was = ia == a.end() ? "" : ia->second, now = ib == b.end() ? "" : ib->second;
    if (was != now) out.push_back({k, was, now});
  }
  return out;
}

}  // namespace

std::vector<ConfigChange> math_config_changes(const std::string& before_toml, const std::string& now_toml) {
  return changes(before_toml, now_toml, "checkpoint's", key_changes_math);
}

std::vector<ConfigChange> suite_config_changes(const std::string& before_toml, const std::string& now_toml) {
  static const std::set<std::string> kDuringTraining = {"eval.every_steps", "eval.max_kl", "eval.patience",
                                                        "eval.min_delta"};
  return changes(before_toml, now_toml, "evaluation's", [](const std::string& k) {
    return k.rfind("eval.", 0) == 0 && !kDuringTraining.count(k);
  });
}

}  // namespace r1dist
