// Qwen2Config: config.json parsing (every missing field named, unsupported features
// refused by name) and the presets' shapes and LoRA parameter counts (the published R1-distill configs).
// Torch-free; loading the weights is tested in tests/torch/test_qwen2.cpp.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "r1dist/base/error.h"
#include "r1dist/formats/qwen2_config.h"
#include "support/temp.h"
#include "support/tokenizer.h"

namespace r1dist {
namespace {

using nlohmann::json;
using test::copy_fixture;
using test::edit_json;
using test::r1_tokenizer;
using test::read_text;
using test::TempDir;
using test::ThrowsWith;
using test::write_text;

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
  EXPECT_NE(err.find("missing field \"hidden_size\""), std::string::npos) << err;
  EXPECT_NE(err.find("missing field \"num_key_value_heads\""), std::string::npos) << err;
}

TEST(Qwen2Loading, UnsupportedFeaturesAreRefusedByName) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["use_sliding_window"] = true; });
  const auto err = config_error(dir);
  EXPECT_NE(err.find("use_sliding_window = true is not supported"), std::string::npos) << err;
  // RoPE over part of each head, at the top level or among the rope parameters; 1 is the whole.
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["use_sliding_window"] = false;
    j["partial_rotary_factor"] = 0.5;
  });
  EXPECT_NE(config_error(dir).find("partial_rotary_factor 0.5 is not supported"), std::string::npos);
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["partial_rotary_factor"] = 1.0;
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.25}};
  });
  EXPECT_NE(config_error(dir).find("partial_rotary_factor 0.25 is not supported"), std::string::npos);
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["rope_parameters"]["partial_rotary_factor"] = 1; });
  EXPECT_EQ(config_error(dir), "");
}

// Every value is read through one checked accessor: a wrong type names the file, the key,
// what it is and what it should be (a fuzzed config.json with "use_sliding_window": 20 used
// to escape as a bare nlohmann type_error).
TEST(Qwen2Loading, WrongTypesNameTheKeyAndBothTypes) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["use_sliding_window"] = 20;
    j["torch_dtype"] = 5;
    j.erase("dtype");
    j["hidden_act"] = nullptr;
    j["rope_scaling"] = "linear";
  });
  const auto err = config_error(dir);
  for (const char* part : {"\"use_sliding_window\" is a JSON number (20), not a boolean",
                           "\"torch_dtype\" is a JSON number (5), not a string",
                           "\"rope_scaling\" is a JSON string (\"linear\"), not an object"})
    EXPECT_NE(err.find(part), std::string::npos) << part << "\n" << err;
  EXPECT_EQ(err.find("json.exception"), std::string::npos) << err;
}

TEST(Qwen2Loading, EosTokenIdMayBeAListAndEveryIdMustBeAToken) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["eos_token_id"] = {1, 2}; });
  EXPECT_EQ(read_qwen2_config(dir).eos_token_ids, (std::vector<int64_t>{1, 2}));
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["eos_token_id"] = -7; });
  EXPECT_NE(config_error(dir).find("eos_token_id -7 is not a token id"), std::string::npos) << config_error(dir);
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["eos_token_id"] = 1;
    j["torch_dtype"] = "int8";
    j.erase("dtype");
  });
  EXPECT_NE(config_error(dir).find("torch_dtype 'int8' is not one of"), std::string::npos) << config_error(dir);
}

// architectures, when config.json names it, must be Qwen2's causal LM: another class's weights
// can have Qwen2's tensor names and shapes (a Llama with q/k/v biases, Qwen2-MoE's dense
// layers) and compute something else.
TEST(Qwen2Loading, ArchitecturesMustNameQwen2ForCausalLM) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  for (const char* other : {"LlamaForCausalLM", "Qwen2MoeForCausalLM"}) {
    edit_json(dir + "/config.json", [&](json& j) { j["architectures"] = {other}; });
    EXPECT_THROW(read_qwen2_config(dir), UsageError) << other;
    const auto err = config_error(dir);
    EXPECT_NE(err.find(dir + "/config.json:"), std::string::npos) << err;
    EXPECT_NE(err.find(std::string("architectures is [\"") + other + "\"], r1dist implements [\"Qwen2ForCausalLM\"]"),
              std::string::npos)
        << err;
  }
  edit_json(dir + "/config.json", [](json& j) { j.erase("architectures"); });
  EXPECT_NO_THROW(read_qwen2_config(dir)) << "without the key, model_type decides";
}

// Scaling keys without a rope_type (or type) name a scaled RoPE of no known kind, which
// transformers cannot build either: refused as the named variants are. rope_theta alone, or
// the 'default' type, is plain RoPE.
TEST(Qwen2Loading, RopeScalingWithoutATypeIsRefused) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](json& j) { j["rope_scaling"] = {{"factor", 2.0}}; });
  EXPECT_THROW(read_qwen2_config(dir), UsageError);
  EXPECT_NE(config_error(dir).find(
                "rope_scaling sets factor without a rope_type: scaled RoPE is not supported (only 'default' RoPE)"),
            std::string::npos)
      << config_error(dir);
  edit_json(dir + "/config.json", [](json& j) {
    j.erase("rope_scaling");
    j["rope_parameters"] = {{"rope_theta", 10000.0}, {"factor", 4.0}, {"original_max_position_embeddings", 512}};
  });
  EXPECT_NE(config_error(dir).find("rope_parameters sets factor, original_max_position_embeddings without a rope_type"),
            std::string::npos)
      << config_error(dir);
  edit_json(dir + "/config.json", [](json& j) { j["rope_parameters"] = {{"rope_theta", 20000.0}}; });
  EXPECT_DOUBLE_EQ(read_qwen2_config(dir).rope_theta, 20000.0);
  edit_json(dir + "/config.json", [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; });
  EXPECT_NE(config_error(dir).find("rope_scaling.rope_type 'linear' is not supported (only 'default' RoPE)"),
            std::string::npos)
      << config_error(dir);
}

// bos_token_id, eos_token_id and max_position_embeddings are what config.json says, and
// unset where it says nothing: a file written for the model then leaves them out instead of
// writing R1's (151646, 151643, 131072), which name no token of a smaller vocabulary. The
// presets keep R1's.
TEST(Qwen2Loading, TokenIdsAndMaxPositionsStayUnsetWhenAbsent) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](json& j) {
    for (const char* k : {"bos_token_id", "eos_token_id", "max_position_embeddings"}) j.erase(k);
  });
  const auto c = read_qwen2_config(dir);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_FALSE(c.max_position_embeddings.has_value());
  const auto written = json::parse(qwen2_config_json(c));
  for (const char* k : {"bos_token_id", "eos_token_id", "max_position_embeddings"})
    EXPECT_FALSE(written.contains(k)) << k;
  // The file for rewritten weights: the source as it is but for its dtype key(s).
  auto want = json::parse(read_text(dir + "/config.json"));
  want["dtype"] = "float32";  // qwen2_a has transformers 5's "dtype" (and no torch_dtype)
  EXPECT_EQ(json::parse(rewritten_config_json(dir, "float32")), want);
  edit_json(dir + "/config.json", [](json& j) {
    j.erase("dtype");
    j["quantization_config"] = {{"quant_method", "bitsandbytes"}};
  });
  const auto rewritten = json::parse(rewritten_config_json(dir, "bfloat16"));
  EXPECT_EQ(rewritten["torch_dtype"], "bfloat16");
  EXPECT_FALSE(rewritten.contains("quantization_config")) << "the rewritten weights are not quantised";
  const auto r1 = qwen2_preset("r1-distill-qwen-7b");
  EXPECT_EQ(r1.bos_token_id, 151646);
  EXPECT_EQ(r1.eos_token_ids, (std::vector<int64_t>{151643}));
  EXPECT_EQ(r1.max_position_embeddings, 131072);
}

// A model directory for the generation tests: the tiny preset's config.json (the R1 vocabulary
// and special ids), which the R1 tokenizer fits.
std::string tiny_config_dir(const TempDir& tmp) {
  const std::string dir = tmp / "m";
  make_dirs(dir);
  write_text(dir + "/config.json", qwen2_config_json(qwen2_preset("tiny")));
  return dir;
}

// Generation stops at each id that transformers stops at: the tokenizer's EOS, config.json's
// eos_token_id and generation_config.json's (one id or a list each), without repeats.
TEST(Qwen2Generation, StopIdsAreTheTokenizersEosAndBothConfigsEosTokenIds) {
  if (!std::filesystem::exists(test::r1_tokenizer_dir() + "/tokenizer.json")) GTEST_SKIP() << "no R1 tokenizer";
  TempDir tmp;
  const auto dir = tiny_config_dir(tmp);
  const auto& tok = r1_tokenizer();
  EXPECT_EQ(generation_stop_ids(dir, tok), (std::vector<int64_t>{151643}));
  edit_json(dir + "/config.json", [](json& j) { j["eos_token_id"] = {151643, 151644}; });
  write_text(dir + "/generation_config.json", R"({"bos_token_id": 151646, "eos_token_id": [151645, 151643]})");
  EXPECT_EQ(generation_stop_ids(dir, tok), (std::vector<int64_t>{151643, 151644, 151645}));
  write_text(dir + "/generation_config.json", R"({"eos_token_id": 7})");
  EXPECT_EQ(generation_stop_ids(dir, tok), (std::vector<int64_t>{151643, 151644, 7}));
  // generation_config.json's ids must be tokens, as config.json's must.
  write_text(dir + "/generation_config.json", R"({"eos_token_id": [151645, 200000]})");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { generation_stop_ids(dir, tok); },
                                     {dir + "/generation_config.json:", "eos_token_id 200000 is not a token id"}));
  // A vocabulary without the tokenizer's EOS and no eos_token_id anywhere: no stop id (warned
  // about; generation runs to its limit).
  const auto small = copy_fixture(tmp, "qwen2_a");
  edit_json(small + "/config.json", [](json& j) { j.erase("eos_token_id"); });
  std::filesystem::remove(small + "/generation_config.json");
  EXPECT_TRUE(generation_stop_ids(small, tok).empty());
}

// The one check of tokenized input against the model's embedding (train, eval, generate):
// the id, the vocabulary size, the input and the tokenizer named, with a HINT.
TEST(Qwen2Generation, AnIdBeyondTheVocabularyIsRefusedNamingTheTokenizer) {
  if (!std::filesystem::exists(test::r1_tokenizer_dir() + "/tokenizer.json")) GTEST_SKIP() << "no R1 tokenizer";
  const auto& tok = r1_tokenizer();
  EXPECT_NO_THROW(check_token_id(319, "prompt 1", "m", 320, tok));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { check_token_id(151643, "prompt 2", "m", 320, tok); },
                                     {"m/config.json: vocab_size is 320, but the tokenized data holds id 151643",
                                      "prompt 2", "<｜end▁of▁sentence｜>", tok.path(), "HINT"}));
}

}  // namespace
}  // namespace r1dist
