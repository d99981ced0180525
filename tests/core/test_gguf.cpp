// GGUF writer units: the encodings' rounding at their edges, the byte layout of a small file
// (read back byte by byte here, not by the writer), and the Qwen2 name and type tables. The
// whole export is checked end to end by an independent reader in tests/e2e/test_export.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "r1dist/base/fs.h"
#include "r1dist/formats/gguf.h"
#include "r1dist/formats/gguf_qwen2.h"
#include "support/temp.h"
#include "support/tokenizer.h"

namespace r1dist {
namespace {

float bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

TEST(Gguf, HalfAndBfloatRoundToNearestEven) {
  EXPECT_EQ(gguf::f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(gguf::f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(gguf::f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(gguf::f32_to_f16(65519.0f), 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(gguf::f32_to_f16(65520.0f), 0x7c00);  // the tie rounds to even: infinity
  EXPECT_EQ(gguf::f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);      // tie between 1 and 1 + 2^-10: even (1)
  EXPECT_EQ(gguf::f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);      // tie: even (1 + 2^-9)
  EXPECT_EQ(gguf::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);   // smallest subnormal
  EXPECT_EQ(gguf::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);   // half of it: tie to even (0)
  EXPECT_EQ(gguf::f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(gguf::f32_to_f16(std::ldexp(1023.0f, -24) + std::ldexp(1.0f, -25)), 0x0400);  // carries to normal
  EXPECT_EQ(gguf::f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(gguf::f16_to_f32(gguf::f32_to_f16(std::nanf("")))));
  for (uint32_t h : {0x0001u, 0x03ffu, 0x0400u, 0x3c00u, 0x7bffu, 0x8001u, 0xbc00u})
    EXPECT_EQ(gguf::f32_to_f16(gguf::f16_to_f32(uint16_t(h))), h) << h;

  EXPECT_EQ(gguf::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(gguf::f32_to_bf16(bits(0x3f808000u)), 0x3f80);  // tie: even
  EXPECT_EQ(gguf::f32_to_bf16(bits(0x3f818000u)), 0x3f82);  // tie: even
  EXPECT_EQ(gguf::f32_to_bf16(bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(gguf::f32_to_bf16(bits(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to infinity
  EXPECT_EQ(gguf::f32_to_bf16(bits(0x7f800001u)) & 0x7fc0, 0x7fc0);  // a signalling NaN comes out quiet
  EXPECT_EQ(gguf::bf16_to_f32(0xc040), -3.0f);
}

TEST(Gguf, Q8BlocksHoldAnFp16ScaleAndRoundedQuotients) {
  std::vector<float> x(64);
  x[0] = -1.27f;  // max |x|: d = 0.01
  for (int i = 1; i < 32; ++i) x[i] = float(i - 16) * 0.0793f;  // x / d never near a tie
  // second block all zero: d = 0, q = 0
  std::vector<uint8_t> out(gguf::tensor_bytes(gguf::TensorType::Q8_0, 64));
  ASSERT_EQ(out.size(), 68u);
  gguf::encode(gguf::TensorType::Q8_0, x.data(), 64, out.data());
  uint16_t d;
  std::memcpy(&d, out.data(), 2);
  EXPECT_EQ(d, gguf::f32_to_f16(1.27f / 127.0f));
  for (int i = 0; i < 32; ++i) EXPECT_EQ(int(int8_t(out[2 + i])), int(std::lround(x[i] / (1.27f / 127.0f)))) << i;
  EXPECT_EQ(int(int8_t(out[2 + 0])), -127);
  for (int i = 34; i < 68; ++i) EXPECT_EQ(out[i], 0) << i;
  EXPECT_FALSE(gguf::can_store(gguf::TensorType::Q8_0, 176));
  EXPECT_TRUE(gguf::can_store(gguf::TensorType::Q8_0, 1536));
}

uint64_t u64(const std::string& s, size_t at) {
  uint64_t v;
  std::memcpy(&v, s.data() + at, 8);
  return v;
}
uint32_t u32(const std::string& s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

TEST(Gguf, FileIsTheHeaderThenEachTensorAlignedTo32) {
  test::TempDir d;
  gguf::Metadata m;
  m.set_str("general.architecture", "qwen2");
  m.set_u32("qwen2.block_count", 2);
  m.set_str("general.architecture", "qwen2");  // set twice: written once
  std::vector<gguf::TensorSpec> specs = {{"a", {3}, gguf::TensorType::F32}, {"b.weight", {2, 5}, gguf::TensorType::F16}};
  const std::string path = d / "t.gguf";
  const uint64_t size = gguf::write_file(path, m, specs, [](size_t i, std::vector<float>& v) {
    for (size_t j = 0; j < v.size(); ++j) v[j] = float(10 * i + j);
  });
  const std::string f = read_file(path);
  ASSERT_EQ(f.size(), size);
  EXPECT_EQ(f.substr(0, 4), "GGUF");
  EXPECT_EQ(u32(f, 4), 3u);
  EXPECT_EQ(u64(f, 8), 2u);   // tensors
  EXPECT_EQ(u64(f, 16), 3u);  // metadata: the two keys + general.alignment
  size_t p = 24;
  auto str = [&] {
    const uint64_t n = u64(f, p);
    std::string s = f.substr(p + 8, n);
    p += 8 + n;
    return s;
  };
  EXPECT_EQ(str(), "general.architecture");
  EXPECT_EQ(u32(f, p), 8u);  // string
  p += 4;
  EXPECT_EQ(str(), "qwen2");
  EXPECT_EQ(str(), "qwen2.block_count");
  EXPECT_EQ(u32(f, p), 4u);  // uint32
  EXPECT_EQ(u32(f, p + 4), 2u);
  p += 8;
  EXPECT_EQ(str(), "general.alignment");
  EXPECT_EQ(u32(f, p + 4), 32u);
  p += 8;
  EXPECT_EQ(str(), "a");
  EXPECT_EQ(u32(f, p), 1u);       // n_dims
  EXPECT_EQ(u64(f, p + 4), 3u);   // ne0
  EXPECT_EQ(u32(f, p + 12), 0u);  // F32
  EXPECT_EQ(u64(f, p + 16), 0u);  // offset
  p += 24;
  EXPECT_EQ(str(), "b.weight");
  EXPECT_EQ(u32(f, p), 2u);
  EXPECT_EQ(u64(f, p + 4), 5u);  // innermost first
  EXPECT_EQ(u64(f, p + 12), 2u);
  EXPECT_EQ(u32(f, p + 20), 1u);   // F16
  EXPECT_EQ(u64(f, p + 24), 32u);  // 12 bytes of "a", padded to 32
  p += 32;
  const size_t data = (p + 31) / 32 * 32;
  for (size_t i = p; i < data; ++i) EXPECT_EQ(f[i], '\0');
  float a2;
  std::memcpy(&a2, f.data() + data + 8, 4);
  EXPECT_EQ(a2, 2.0f);
  uint16_t b7;
  std::memcpy(&b7, f.data() + data + 32 + 2 * 7, 2);
  EXPECT_EQ(gguf::f16_to_f32(b7), 17.0f);
  EXPECT_EQ(f.size(), data + 32 + 32);  // 20 bytes of "b", padded too
}

TEST(Gguf, Qwen2TensorsTakeLlamaCppNamesAndTypes) {
  auto c = qwen2_preset("tiny");
  const auto t = qwen2_gguf_tensors(c, gguf_export_type("q8_0"));
  std::set<std::string> names;
  for (const auto& g : t) EXPECT_TRUE(names.insert(g.spec.name).second) << g.spec.name;
  EXPECT_EQ(t.size(), qwen2_weight_table(c).size());
  for (const char* n : {"token_embd.weight", "blk.1.attn_norm.weight", "blk.0.attn_q.bias", "blk.0.attn_output.weight",
                        "blk.1.ffn_norm.weight", "blk.1.ffn_down.weight", "output_norm.weight", "output.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  for (const auto& g : t) {
    if (g.hf.shape.size() == 1) EXPECT_EQ(g.spec.type, gguf::TensorType::F32) << g.spec.name;
    else if (g.hf.module == "down_proj") EXPECT_EQ(g.spec.type, gguf::TensorType::F16) << "rows of 176";
    else EXPECT_EQ(g.spec.type, gguf::TensorType::Q8_0) << g.spec.name;
  }
  c.tie_word_embeddings = true;
  for (const auto& g : qwen2_gguf_tensors(c, gguf_export_type("bf16"))) EXPECT_NE(g.spec.name, "output.weight");
  EXPECT_THROW(gguf_export_type("q4_k"), UsageError);
}

// The value of a UINT32 entry of `m`, found in its serialized form (the key's bytes, then
// the value type 4 and the value, little-endian).
uint32_t u32_entry(const gguf::Metadata& m, const std::string& key) {
  const std::string s = m.serialize();
  const size_t at = s.find(key);
  if (at == std::string::npos || at + key.size() + 8 > s.size()) {
    ADD_FAILURE() << "no entry " << key;
    return 0;
  }
  uint32_t type = 0, value = 0;
  std::memcpy(&type, s.data() + at + key.size(), 4);
  std::memcpy(&value, s.data() + at + key.size() + 4, 4);
  EXPECT_EQ(type, 4u) << key << " is not a UINT32";
  return value;
}

// qwen2.context_length, which llama.cpp requires: config.json's max_position_embeddings, else
// tokenizer_config.json's model_max_length, else refused; R1's 131072 is never invented. The
// special ids come from the tokenizer, or config.json where it names them.
TEST(Gguf, ContextLengthComesFromTheModelOrItsTokenizer) {
  if (!std::filesystem::exists(test::r1_tokenizer_dir() + "/tokenizer.json")) GTEST_SKIP() << "no R1 tokenizer";
  test::TempDir tmp;
  const std::string dir = tmp / "m";
  make_dirs(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    copy_file(test::r1_tokenizer_dir() + "/" + f, dir + "/" + f);
  auto c = qwen2_preset("tiny");
  const auto& type = gguf_export_type("f32");
  EXPECT_EQ(u32_entry(qwen2_gguf_metadata(c, dir, "t", type), "qwen2.context_length"), 131072u);
  c.max_position_embeddings.reset();
  c.bos_token_id.reset();
  c.eos_token_ids.clear();
  const auto m = qwen2_gguf_metadata(c, dir, "t", type);
  EXPECT_EQ(u32_entry(m, "qwen2.context_length"), 16384u) << "the R1 tokenizer's model_max_length";
  EXPECT_EQ(u32_entry(m, "tokenizer.ggml.eos_token_id"), 151643u) << "the tokenizer's EOS";
  test::edit_json(dir + "/tokenizer_config.json", [](nlohmann::json& j) { j.erase("model_max_length"); });
  EXPECT_TRUE(test::ThrowsWith<UsageError>([&] { qwen2_gguf_metadata(c, dir, "t", type); },
                                           {dir + "/config.json has no max_position_embeddings", "model_max_length",
                                            "HINT: add \"max_position_embeddings\""}));
}

}  // namespace
}  // namespace r1dist
