// Qwen2Config: config.json parsing (every missing field named, unsupported features
// refused by name) and the presets' shapes and LoRA parameter counts (shared/SPEC.md §1).
// Torch-free; loading the weights is tested in tests/torch/test_qwen2.cpp.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "r1dist/base/error.h"
#include "r1dist/formats/qwen2_config.h"
#include "support/temp.h"

namespace r1dist {
namespace {

using test::copy_fixture;
using test::edit_json;
using test::TempDir;

std::string config_error(const std::string& dir) {
  try {
    read_qwen2_config(dir);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Qwen2Model, LoraR16ParameterCountsMatchTheSpec) {
  const auto& all = projection_names();
  EXPECT_EQ(lora_param_count(qwen2_preset("r1-distill-qwen-1.5b"), 16, all), 18464768);
  EXPECT_EQ(lora_param_count(qwen2_preset("r1-distill-qwen-7b"), 16, all), 40370176);
  EXPECT_EQ(lora_param_count(qwen2_preset("r1-distill-qwen-14b"), 16, all), 68812800);
  EXPECT_EQ(lora_param_count(qwen2_preset("r1-distill-qwen-1.5b"), 16, {"q_proj"}), 28 * 16 * (1536 + 1536));
}

TEST(Qwen2Model, PresetsHaveTheSpecShapes) {
  const auto c = qwen2_preset("r1-distill-qwen-14b");
  EXPECT_EQ(c.hidden_size, 5120);
  EXPECT_EQ(c.intermediate_size, 13824);
  EXPECT_EQ(c.num_hidden_layers, 48);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 152064);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_THROW(qwen2_preset("r1-distill-qwen-3b"), UsageError);
}

TEST(Qwen2Loading, ConfigMissingFieldsAreAllNamed) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j.erase("hidden_size");
    j.erase("num_key_value_heads");
  });
  const auto err = config_error(dir);
  EXPECT_NE(err.find("config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("missing field 'hidden_size'"), std::string::npos) << err;
  EXPECT_NE(err.find("missing field 'num_key_value_heads'"), std::string::npos) << err;
}

TEST(Qwen2Loading, UnsupportedFeaturesAreRefusedByName) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["use_sliding_window"] = true; });
  const auto err = config_error(dir);
  EXPECT_NE(err.find("use_sliding_window = true is not supported"), std::string::npos) << err;
}

}  // namespace
}  // namespace r1dist
