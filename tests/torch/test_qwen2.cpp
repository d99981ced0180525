// Qwen2 forward parity against HF transformers fixtures (tools/reference/make_qwen2_fixture.py),
// KV-cache consistency, and model-loading errors (config.json parsing and the presets are
// tested in tests/core/test_qwen2_config.cpp).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/model/init_model.h"
#include "r1dist/model/lm_loss.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/tensor/bytes.h"
#include "support/safetensors_edit.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

using test::copy_fixture;
using test::edit_json;
using test::fixture;
using test::TempDir;
namespace fs = std::filesystem;

class Qwen2Parity : public ::testing::TestWithParam<const char*> {};

// fp32 on CPU: logits within 1e-4 (max|diff| / max|ref|), losses within 1e-5 absolute.
TEST_P(Qwen2Parity, Fp32LogitsAndLossMatchTransformers) {
  const std::string dir = fixture(GetParam());
  auto ref = st::File::open(dir + "/reference.safetensors");
  auto model = Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU));
  at::NoGradGuard ng;
  auto ids = test::reference_tensor(ref, "input_ids");
  auto logits = model.forward(ids);
  const double err = test::max_rel_err(logits, test::reference_tensor(ref, "logits"), 1e-4, std::string(GetParam()) + " logits");
  std::printf("%s: fp32 logits max rel err %.3g\n", GetParam(), err);
  EXPECT_NEAR(causal_lm_loss(logits, ids).item<double>(), test::reference_tensor(ref, "loss").item<double>(), 1e-5);
  EXPECT_NEAR(causal_lm_loss(logits, test::reference_tensor(ref, "labels")).item<double>(),
              test::reference_tensor(ref, "loss_masked").item<double>(), 1e-5);
}

// Only where libtorch has CUDA (the GPU machine): bf16 on the GPU against HF's bf16 GPU logits
// and against the fp32 reference. bf16 has an 8-bit mantissa; both tolerances are stated here.
TEST_P(Qwen2Parity, Bf16CudaLogitsMatchTransformers) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA in this build/machine";
  const std::string dir = fixture(GetParam());
  auto ref = st::File::open(dir + "/reference.safetensors");
  if (!ref.find("logits_bf16_cuda")) GTEST_SKIP() << "fixture has no bf16 CUDA reference";
  auto model = Qwen2Model::load(dir, at::kBFloat16, at::Device(at::kCUDA, 0));
  at::NoGradGuard ng;
  auto ids = test::reference_tensor(ref, "input_ids");
  auto logits = model.forward(ids.cuda()).to(at::kFloat).cpu();
  const double vs_hf = test::max_rel_err(logits, test::reference_tensor(ref, "logits_bf16_cuda"), 3e-2, "bf16 vs HF bf16");
  const double vs_fp32 = test::max_rel_err(logits, test::reference_tensor(ref, "logits"), 5e-2, "bf16 vs fp32 reference");
  std::printf("%s: bf16 CUDA logits max rel err %.3g vs HF bf16, %.3g vs fp32\n", GetParam(), vs_hf, vs_fp32);
  EXPECT_NEAR(causal_lm_loss(logits, ids).item<double>(), test::reference_tensor(ref, "loss").item<double>(), 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Qwen2Parity, ::testing::Values("qwen2_a", "qwen2_b"));

TEST(Qwen2Model, KvCacheGivesTheSameLogitsAsOneFullPass) {
  const std::string dir = fixture("qwen2_b");
  auto ref = st::File::open(dir + "/reference.safetensors");
  auto model = Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU));
  at::NoGradGuard ng;
  auto ids = test::reference_tensor(ref, "input_ids");
  auto full = model.forward(ids);
  KVCache cache;
  std::vector<at::Tensor> parts = {model.forward(ids.slice(1, 0, 10), &cache)};  // prefill 10
  for (int64_t t = 10; t < ids.size(1); t += 1) parts.push_back(model.forward(ids.slice(1, t, t + 1), &cache));
  EXPECT_EQ(cache.length, ids.size(1));
  test::max_rel_err(at::cat(parts, 1), full, 1e-5, "incremental vs full");
}

std::string load_error(const std::string& dir) {
  try {
    Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// What a model directory holds is the user's input: a file missing or at odds with
// config.json is a UsageError (exit 2) that names it.
TEST(Qwen2Loading, MissingShardNamesTheShard) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_b");
  fs::remove(dir + "/model-00003-of-00006.safetensors");
  EXPECT_THROW(Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU)), UsageError);
  const auto err = load_error(dir);
  EXPECT_NE(err.find("model-00003-of-00006.safetensors"), std::string::npos) << err;
}

TEST(Qwen2Loading, ShapeMismatchAndMissingTensorsAreListed) {
  // A checkpoint written for one shape, config.json claiming another.
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["intermediate_size"] = 128;
    j["num_hidden_layers"] = 3;
    j.erase("layer_types");
  });
  EXPECT_THROW(Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU)), UsageError);
  const auto err = load_error(dir);
  EXPECT_NE(err.find("model.layers.0.mlp.gate_proj.weight: shape [160, 64] != expected [128, 64]"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  EXPECT_NE(err.find("model.layers.2."), std::string::npos) << err;
}

TEST(Qwen2Loading, UnexpectedTensorsAreListed) {
  TempDir tmp;
  const auto dir = copy_fixture(tmp, "qwen2_a");
  edit_json(dir + "/config.json", [](nlohmann::json& j) {
    j["num_hidden_layers"] = 1;
    j["layer_types"] = {"full_attention"};
  });
  EXPECT_THROW(Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU)), UsageError);
  const auto err = load_error(dir);
  EXPECT_NE(err.find("unexpected"), std::string::npos) << err;
  EXPECT_NE(err.find("model.layers.1."), std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
}

// tie_word_embeddings = true with an lm_head.weight stored anyway (some exporters write both):
// transformers loads it and ties the output layer to the embedding, ignoring the stored one;
// so does r1dist.
TEST(Qwen2Loading, TiedEmbeddingsIgnoreAStoredLmHead) {
  TempDir tmp;
  const auto stored = copy_fixture(tmp, "qwen2_a");
  edit_json(stored + "/config.json", [](nlohmann::json& j) { j["tie_word_embeddings"] = true; });
  copy_tree(stored, tmp / "without");
  test::rewrite_safetensors(tmp / "without/model.safetensors", [](std::vector<test::StoredTensor>& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& x) { return x.name == "lm_head.weight"; }), t.end());
  });
  auto with_head = Qwen2Model::load(stored, at::kFloat, at::Device(at::kCPU));
  auto without = Qwen2Model::load(tmp / "without", at::kFloat, at::Device(at::kCPU));
  at::NoGradGuard ng;
  const auto ids = at::arange(1, 17, at::kLong).unsqueeze(0);
  EXPECT_TRUE(with_head.forward(ids).equal(without.forward(ids)));
}

// A weight stored in a dtype that is not floating point is refused naming the tensor, its dtype
// and its file: an integer tensor would otherwise be cast to float silently, and F8 has no
// conversion here.
TEST(Qwen2Loading, WeightsThatAreNotFloatingPointAreRefusedByName) {
  for (const auto dtype : {st::DType::F8_E4M3, st::DType::I8, st::DType::I32}) {
    SCOPED_TRACE(st::dtype_name(dtype));
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "qwen2_a");
    test::rewrite_safetensors(dir + "/model.safetensors", [&](std::vector<test::StoredTensor>& t) {
      auto& norm = test::tensor_named(t, "model.norm.weight");
      norm.dtype = dtype;
      norm.bytes.assign(size_t(norm.shape.at(0)) * st::dtype_size(dtype), 0);
    });
    EXPECT_TRUE(test::ThrowsWith<UsageError>(
        [&] { Qwen2Model::load(dir, at::kFloat, at::Device(at::kCPU)); },
        {"model.norm.weight: " + std::string(st::dtype_name(dtype)) + " (" + dir + "/model.safetensors)",
         "not a floating-point weight"}));
  }
}

TEST(Qwen2Loading, InitModelWritesALoadableShardedDirectory) {
  TempDir tmp;
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 512;  // keep the test small
  InitModelOptions opt;
  opt.seed = 7;
  opt.max_shard_bytes = 64 << 10;
  opt.bias_std = 0.02;
  const auto files = write_random_model(cfg, tmp / "m", opt);
  EXPECT_GT(files.size(), 2u);
  EXPECT_TRUE(fs::exists(tmp / "m/model.safetensors.index.json"));
  auto model = Qwen2Model::load(tmp / "m", at::kFloat, at::Device(at::kCPU));
  // The same seed gives the same weights whatever the sharding.
  opt.max_shard_bytes = 1ull << 30;
  write_random_model(cfg, tmp / "single", opt);
  EXPECT_TRUE(fs::exists(tmp / "single/model.safetensors"));
  auto single = Qwen2Model::load(tmp / "single", at::kFloat, at::Device(at::kCPU));
  auto a = model.named_weights(), b = single.named_weights();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second->equal(*b[i].second)) << a[i].first;
  // Another seed changes them.
  opt.seed = 8;
  write_random_model(cfg, tmp / "other", opt);
  auto other = Qwen2Model::load(tmp / "other", at::kFloat, at::Device(at::kCPU));
  EXPECT_FALSE(other.named_weights()[0].second->equal(*a[0].second));
}

// --device cuda draws the values on the GPU: the same directory for the same seed, the
// transformers scale (N(0, 0.02), norms 1); refused by name where there is no CUDA.
TEST(InitModel, TheGpuDrawsReproducibleWeightsOrIsRefused) {
  test::TempDir tmp;
  auto cfg = qwen2_preset("tiny");
  cfg.vocab_size = 512;
  InitModelOptions opt;
  opt.seed = 7;
  opt.device = "cuda";
  if (!at::hasCUDA()) {
    try {
      write_random_model(cfg, tmp / "m", opt);
      FAIL() << "--device cuda without CUDA was accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--device cuda: this build or machine has no CUDA device"),
                std::string::npos) << e.what();
    }
    opt.device = "tpu";
    EXPECT_THROW(write_random_model(cfg, tmp / "m", opt), UsageError);
    return;
  }
  write_random_model(cfg, tmp / "a", opt);
  write_random_model(cfg, tmp / "b", opt);
  auto a = Qwen2Model::load(tmp / "a", at::kFloat, at::Device(at::kCPU));
  auto b = Qwen2Model::load(tmp / "b", at::kFloat, at::Device(at::kCPU));
  auto wa = a.named_weights(), wb = b.named_weights();
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_TRUE(wa[i].second->equal(*wb[i].second)) << wa[i].first;
    if (wa[i].first.find("norm") != std::string::npos) {
      EXPECT_TRUE(wa[i].second->eq(1).all().item<bool>()) << wa[i].first;
    } else if (wa[i].first.find("bias") == std::string::npos) {
      EXPECT_NEAR(wa[i].second->std().item<double>(), 0.02, 0.002) << wa[i].first;
    }
  }
}

}  // namespace
}  // namespace r1dist
