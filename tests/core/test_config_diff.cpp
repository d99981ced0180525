// The config comparisons (config/config_diff.h): for the resume identity, keys that change the
// math are listed with both values; keys that only move work around, or never touch the math,
// are not; for a finished run's final evaluation, the [eval] keys it reads.
#include <gtest/gtest.h>

#include "r1dist/config/config.h"
#include "r1dist/config/config_diff.h"
#include "r1dist/base/error.h"

namespace r1dist {
namespace {

TEST(ConfigDiff, ListsTheKeysThatChangeTheMathWithBothValues) {
  const auto base = parse_config_string("[model]\npath = \"m\"\n[data]\npath = \"a.jsonl\"\n", "a.toml");
  auto now = base;
  now.train.lr = 1e-3;
  now.lora.alpha = 32;
  now.lora.targets = {"q_proj"};
  now.data.max_seq_len = 512;
  now.model.dtype = ComputeDtype::fp32;
  // Not the math: where and how the work runs, what is logged and kept.
  now.data.path = "b.jsonl";
  now.data.threads = 7;
  now.train.micro_batch = 1;
  now.train.grad_accum = 8;
  now.train.checkpointing = Checkpointing::none;
  now.output.dir = "elsewhere";
  now.output.keep = 9;
  now.eval.every_steps = 3;
  now.model.device = DeviceChoice::cpu;
  const auto changes = math_config_changes(base.to_toml(), now.to_toml());
  std::vector<std::string> keys;
  for (const auto& c : changes) keys.push_back(c.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"data.max_seq_len", "lora.alpha", "lora.targets", "model.dtype",
                                            "train.lr"}));
  for (const auto& c : changes)
    if (c.key == "train.lr") {
      EXPECT_EQ(c.was, "2e-04");  // the shortest text that reads back exactly
      EXPECT_EQ(c.now, "0.001");
    }
  EXPECT_TRUE(math_config_changes(base.to_toml(), base.to_toml()).empty());
  EXPECT_THROW(math_config_changes("[train\n", base.to_toml()), Error);
}

// The final evaluation's settings (/eval records the [eval] table): the keys it reads are
// listed, the training-time ones (every_steps, max_kl, patience, min_delta) and other tables
// are not; the table alone compares with a whole config.
TEST(ConfigDiff, TheSuiteSettingsListTheKeysTheEvaluationReads) {
  const auto base = parse_config_string("[model]\npath = \"m\"\n[data]\npath = \"a.jsonl\"\n", "a.toml");
  auto now = base;
  now.eval.max_new_tokens = 7;
  now.eval.mcq_path = "q.jsonl";
  now.eval.every_steps = 3;
  now.eval.patience = 2;
  now.eval.max_kl = 0.5;
  now.eval.min_delta = 0.01;
  now.train.lr = 1e-3;
  const auto changes = suite_config_changes(base.to_toml("eval"), now.to_toml());
  std::vector<std::string> keys;
  for (const auto& c : changes) keys.push_back(c.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"eval.max_new_tokens", "eval.mcq_path"}));
  EXPECT_EQ(changes[0].was, "256");
  EXPECT_EQ(changes[0].now, "7");
  EXPECT_TRUE(suite_config_changes(base.to_toml("eval"), base.to_toml()).empty());
  EXPECT_EQ(base.to_toml("eval").rfind("[eval]\n", 0), 0u) << base.to_toml("eval");
  EXPECT_EQ(base.to_toml("eval").find("[train]"), std::string::npos);
}

// A checkpoint of a padded run (data.packing = false, or a config written before the key
// existed) resumes under the packing default: not refused (packing moves work only), but named
// as a change of layout, as is any other layout key that differs.
TEST(ConfigDiff, APaddedCheckpointResumesUnderPackingAndTheLayoutChangeIsNamed) {
  const auto now = parse_config_string("[model]\npath = \"m\"\n", "now.toml");
  ASSERT_TRUE(now.data.packing);
  auto padded = now;
  padded.data.packing = false;
  std::string without_key = padded.to_toml();
  const auto at = without_key.find("packing = false\n");
  ASSERT_NE(at, std::string::npos) << without_key;
  without_key.erase(at, std::string("packing = false\n").size());
  for (const auto& before : {padded.to_toml(), without_key}) {
    EXPECT_TRUE(math_config_changes(before, now.to_toml()).empty()) << "the resume is accepted";
    const auto moved = layout_config_changes(before, now.to_toml());
    ASSERT_EQ(moved.size(), 1u);
    EXPECT_EQ(moved[0].key, "data.packing");
    EXPECT_EQ(moved[0].was, "false");
    EXPECT_EQ(moved[0].now, "true");
  }
  EXPECT_TRUE(layout_config_changes(now.to_toml(), now.to_toml()).empty());
  // Other layout keys; keys outside the layout, and a missing key of unknown history, are not named.
  auto other = now;
  other.train.micro_batch = 1;
  other.train.grad_accum = 8;
  other.train.checkpointing = Checkpointing::none;
  other.data.threads = 3;
  other.train.lr = 1e-3;
  std::vector<std::string> keys;
  for (const auto& c : layout_config_changes(now.to_toml(), other.to_toml())) keys.push_back(c.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"train.micro_batch", "train.grad_accum", "train.checkpointing"}));
  std::string no_micro = now.to_toml();
  const auto micro = no_micro.find("micro_batch = 2\n");
  ASSERT_NE(micro, std::string::npos) << no_micro;
  no_micro.erase(micro, std::string("micro_batch = 2\n").size());
  EXPECT_EQ(layout_config_changes(no_micro, other.to_toml()).size(), 2u);
}

}  // namespace
}  // namespace r1dist
