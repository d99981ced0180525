// `r1dist export --format gguf` end to end: the tiny model with a small PEFT adapter, exported
// in bf16, f16 and q8_0, each file read back by an independent reader (tools/js/check_gguf.mjs
// on @huggingface/gguf) and compared value by value with the directory `r1dist merge` writes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

#include "e2e/trainer_runs.h"
#include "r1dist/formats/safetensors.h"
#include "support/process.h"
#include "support/temp.h"

namespace r1dist::test {
namespace {

// A rank-4 PEFT adapter on q_proj (rows of 64) and down_proj (rows of 176: not whole Q8_0
// blocks, so q8_0 writes it in F16) of both layers of the tiny model, seeded values.
std::string write_adapter(const TempDir& d) {
  const std::string dir = d / "adapter";
  std::filesystem::create_directories(dir);
  write_text(dir + "/adapter_config.json",
             R"({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,)"
             R"( "bias": "none", "target_modules": ["q_proj", "down_proj"], "fan_in_fan_out": false})");
  std::vector<st::WriteSpec> specs;
  std::vector<std::vector<uint8_t>> bytes;
  uint32_t state = 12345;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols) {
    specs.push_back({name, st::DType::F32, {rows, cols}});
    std::vector<float> v(size_t(rows * cols));
    for (auto& x : v) {
      state = state * 1664525u + 1013904223u;
      x = (float(state >> 8) / float(1 << 24) - 0.5f) * 0.2f;
    }
    bytes.emplace_back(reinterpret_cast<const uint8_t*>(v.data()),
                       reinterpret_cast<const uint8_t*>(v.data()) + v.size() * sizeof(float));
  };
  for (int layer = 0; layer < 2; ++layer)
    for (const auto& [module, out, in] : {std::tuple<std::string, int64_t, int64_t>{"self_attn.q_proj", 64, 64},
                                          {"mlp.down_proj", 64, 176}}) {
      const std::string p = "base_model.model.model.layers." + std::to_string(layer) + "." + module;
      add(p + ".lora_A.weight", 4, in);
      add(p + ".lora_B.weight", out, 4);
    }
  st::write_file(dir + "/adapter_model.safetensors", specs, bytes);
  return dir;
}

bool gguf_reader_available() {
  return node_available() && std::filesystem::exists(source_dir() + "/tools/js/node_modules/@huggingface/gguf");
}

TEST(ExportCli, GgufFilesMatchTheMergedModelInAnIndependentReader) {
  if (!gguf_reader_available())
    GTEST_SKIP() << "node or tools/js/node_modules/@huggingface/gguf is missing (bash tools/install-deps.sh "
                    "installs them); the GGUF reader cannot run here";
  TempDir d;
  const std::string model = tiny_model_dir(), adapter = write_adapter(d);
  auto r = run_r1dist("merge --model " + model + " --adapter " + adapter + " --out " + (d / "merged") +
                      " --out-dtype fp32");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string files;
  for (const char* type : {"bf16", "f16", "q8_0"}) {
    const std::string out = d / (std::string("tiny-") + type + ".gguf");
    r = run_r1dist("export --model " + model + " --adapter " + adapter + " --format gguf --type " + type +
                   " --out " + out);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("4 adapters folded in"), std::string::npos) << r.err;
    files += " " + out + ":" + type;
  }
  const auto check = run_command("node " + source_dir() + "/tools/js/check_gguf.mjs --hf " + (d / "merged") + files);
  EXPECT_EQ(check.code, 0) << check.out << check.err;
  // The summary (the listing of metadata and tensors is indented): sizes, errors per type.
  std::istringstream lines(check.out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] != ' ') std::printf("%s\n", line.c_str());
}

TEST(ExportCli, RefusesUnknownFormatsAndTypes) {
  TempDir d;
  auto r = run_r1dist("export --model " + tiny_model_dir() + " --format safetensors --out " + (d / "x"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("gguf is the only format"), std::string::npos) << r.err;
  r = run_r1dist("export --model " + tiny_model_dir() + " --type q4_k --out " + (d / "x"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("q8_0"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d / "x"));
}

}  // namespace
}  // namespace r1dist::test
