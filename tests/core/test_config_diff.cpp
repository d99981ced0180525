// The resume identity's config comparison (config/config_diff.h): keys that change the math
// are listed with both values; keys that only move work around, or never touch the math, are not.
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

}  // namespace
}  // namespace r1dist
