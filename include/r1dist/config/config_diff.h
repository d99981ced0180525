// Which settings of a run changed between a checkpoint's config and the current one, for the
// resume identity check (train/train_state.h). Only keys that change what training computes
// are compared: the model's dtype, [lora], [quant], [data] and [train], except the keys that
// only move work around (data.path: the data is compared by its fingerprint instead;
// data.threads; data.packing; train.micro_batch and train.grad_accum: their product with the
// world size, the global batch, is compared instead; train.checkpointing). Output, logging,
// evaluation and communication settings never block a resume.
#pragma once
#include <string>
#include <vector>

namespace r1dist {

struct ConfigChange {
  std::string key;  // "train.lr"
  std::string was, now;  // TOML values ("" when absent on that side)
};

// Both arguments are complete configs as TOML text (Config::to_toml, as checkpoints store).
std::vector<ConfigChange> math_config_changes(const std::string& before_toml, const std::string& now_toml);
bool key_changes_math(const std::string& key);
// The keys that lay the same work out differently (data.packing, train.micro_batch,
// train.grad_accum, train.checkpointing, train.keep_layers, train.recompute_mlp_layers,
// train.memory_budget_gb) whose values differ: a resume accepts them (they are not in
// math_config_changes) and names them, since the run then goes on in another layout than its
// checkpoint's (the same loss and gradients to rounding, not bitwise those of the
// uninterrupted run). A key missing from the checkpoint's config is read as the value runs
// had before the key existed (data.packing: false; train.keep_layers,
// train.recompute_mlp_layers and train.memory_budget_gb: 0), so a changed default shows here
// as a change; any other missing key is left out.
std::vector<ConfigChange> layout_config_changes(const std::string& before_toml, const std::string& now_toml);
// The keys of [eval] that change what the final evaluation (eval.suite, the /eval group)
// measures, whose values differ: all but those that act during training (eval.every_steps,
// max_kl, patience, min_delta). Either side may be a whole config or its [eval] table alone
// (Config::to_toml("eval"), as /eval records it).
std::vector<ConfigChange> suite_config_changes(const std::string& before_toml, const std::string& now_toml);
// Refuses (UsageError) a --resume-anyway list naming anything but "all" or comma-separated
// config keys, "model", "data" and "metrics" (the names resume_differences uses), with the
// closest known name for a typo.
void check_resume_anyway(const std::string& keys);

}  // namespace r1dist
