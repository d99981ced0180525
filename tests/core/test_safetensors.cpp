// safetensors reader/writer/model-directory tests. Files are built byte by byte here (never
// by the writer under test) or taken from the reference implementation: its own test vectors
// and the HF transformers fixtures in tests/fixtures (written by save_pretrained).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/safetensors.h"
#include "support/temp.h"

namespace st = r1dist::st;
namespace fs = std::filesystem;
using st::DType;
using Bytes = std::vector<uint8_t>;

namespace {


std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A raw safetensors file: length prefix, header text as given (padded with spaces to a
// multiple of 8 when pad), then data.
std::string raw_file(std::string header, const std::string& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size()) + header + data;
}

using r1dist::UsageError;
using r1dist::test::ThrowsWith;

Bytes pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

class TmpDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "r1dist_st_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
  }
  void TearDown() override {
    r1dist::remove_tree(dir_);
  }
  std::string p(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  // Writes a raw file and returns its path.
  std::string put(const std::string& name, const std::string& bytes) {
    r1dist::test::write_text(p(name), bytes);
    return p(name);
  }
  std::string dir_;
};

class SafetensorsReader : public TmpDirTest {};
// A file or directory that is not what it should be is the user's to fix: UsageError (exit 2).
class SafetensorsReaderErrors : public TmpDirTest {};
class SafetensorsWriter : public TmpDirTest {};
class SafetensorsReference : public TmpDirTest {};
class SafetensorsModelDir : public TmpDirTest {};
class SafetensorsCheckpointErrors : public TmpDirTest {};

using r1dist::test::fixture;

}  // namespace

TEST(SafetensorsDType, NamesSizesAndParsing) {
  const std::vector<std::tuple<DType, const char*, size_t>> table = {
      {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},           {DType::I8, "I8", 1},
      {DType::I16, "I16", 2},   {DType::U16, "U16", 2},         {DType::F16, "F16", 2},
      {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},         {DType::U32, "U32", 4},
      {DType::F32, "F32", 4},   {DType::F64, "F64", 8},         {DType::I64, "I64", 8},
      {DType::U64, "U64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1}};
  for (const auto& [d, name, size] : table) {
    EXPECT_STREQ(st::dtype_name(d), name);
    EXPECT_EQ(st::dtype_size(d), size) << name;
    ASSERT_TRUE(st::parse_dtype(name).has_value()) << name;
    EXPECT_EQ(*st::parse_dtype(name), d) << name;
  }
  for (const char* bad : {"bf16", "F8_E4M3FN", "", "FP32", "F32 "})
    EXPECT_FALSE(st::parse_dtype(bad).has_value()) << "'" << bad << "'";
}

TEST_F(SafetensorsWriter, RoundTripSeveralDtypesZeroSizeAndMetadata) {
  const std::vector<st::WriteSpec> specs = {
      {"model.embed_tokens.weight", DType::BF16, {3, 5}},
      {"model.norm.weight", DType::F32, {2, 2}},
      {"ids", DType::I64, {4}},
      {"empty", DType::U8, {0, 7}},
      {"scalar", DType::F16, {}},
      {"mask", DType::BOOL, {3}},
      {"fp8", DType::F8_E4M3, {2, 2}},
      {"deep", DType::I32, {1, 1, 3}},
      {"empty_tail", DType::F64, {5, 0}},
  };
  std::vector<Bytes> bytes;
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : specs[i].shape) n *= d;
    bytes.push_back(pattern(static_cast<size_t>(n) * st::dtype_size(specs[i].dtype), 100 + i));
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  const std::string path = p("round.safetensors");
  st::write_file(path, specs, bytes, meta);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  const st::File f = st::File::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), specs.size());
  uint64_t prev_end = 0;
  for (const auto& t : f.tensors()) {  // sorted by offset, packed
    EXPECT_EQ(t.begin, prev_end) << t.name;
    prev_end = t.end;
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const st::TensorInfo* t = f.find(specs[i].name);
    ASSERT_NE(t, nullptr) << specs[i].name;
    EXPECT_EQ(t->dtype, specs[i].dtype) << t->name;
    EXPECT_EQ(t->shape, specs[i].shape) << t->name;
    EXPECT_EQ(t->nbytes(), bytes[i].size()) << t->name;
    EXPECT_EQ(static_cast<size_t>(t->numel()) * st::dtype_size(t->dtype), bytes[i].size()) << t->name;
    EXPECT_EQ(Bytes(f.data(*t), f.data(*t) + t->nbytes()), bytes[i]) << t->name;
  }
  EXPECT_EQ(f.at("scalar").numel(), 1);
  EXPECT_EQ(f.at("empty").numel(), 0);
  EXPECT_EQ(f.find("absent"), nullptr);
}

TEST_F(SafetensorsWriter, HeaderPaddedToEightWithSpacesInGivenOrder) {
  // Name lengths 1..8 walk the unpadded header through every residue mod 8.
  for (size_t len = 1; len <= 8; ++len) {
    const std::string name(len, 'w');
    const std::string path = p("pad" + std::to_string(len) + ".safetensors");
    st::write_file(path, {{name, DType::U8, {1}}, {"a", DType::U16, {2}}}, {{0x2a}, {1, 2, 3, 4}});
    const std::string raw = r1dist::test::read_text(path);
    ASSERT_GE(raw.size(), 8u);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(raw[i])) << (8 * i);
    EXPECT_EQ(n % 8, 0u) << name;
    // Tensor order as given (not sorted by name), compact JSON, metadata first.
    const std::string json = "{\"__metadata__\":{\"format\":\"pt\"},\"" + name +
                             "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                             "\"a\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[1,5]}}";
    ASSERT_EQ(n, json.size() + (8 - json.size() % 8) % 8) << name;
    EXPECT_EQ(raw.substr(8, json.size()), json);
    EXPECT_EQ(raw.substr(8 + json.size(), n - json.size()), std::string(n - json.size(), ' '));
    EXPECT_EQ(raw.substr(8 + n), std::string("\x2a\x01\x02\x03\x04", 5));
  }
}

TEST_F(SafetensorsReader, HandcraftedFileByteForByte) {
  // Built by hand: BF16 [2, 3] then I64 [2], metadata first, padded to 8 with spaces.
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
      "\"bias\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[12,28]}}";
  // bf16 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00 (little-endian); int64 7 and -1.
  const std::string data = std::string("\x80\x3f\x00\xc0\x00\x3f\x80\x3f\x00\xc0\x00\x3f", 12) +
                           std::string("\x07\0\0\0\0\0\0\0", 8) + std::string(8, '\xff');
  const std::string bytes = raw_file(header, data);
  ASSERT_EQ(header.size(), 147u);  // + 5 spaces = 152
  ASSERT_EQ(bytes.size(), 8u + 152u + 28u);
  ASSERT_EQ(bytes.substr(8 + 147, 5), "     ");
  const std::string path = put("hand.safetensors", bytes);

  const st::File f = st::File::open(path);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "w");
  EXPECT_EQ(f.tensors()[1].name, "bias");
  const auto& w = f.at("w");
  EXPECT_EQ(w.dtype, DType::BF16);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.begin, 0u);
  EXPECT_EQ(w.end, 12u);
  uint16_t w1;
  std::memcpy(&w1, f.data(w) + 2, 2);
  EXPECT_EQ(w1, 0xc000);
  const auto& b = f.at("bias");
  int64_t b0, b1;
  std::memcpy(&b0, f.data(b), 8);
  std::memcpy(&b1, f.data(b) + 8, 8);
  EXPECT_EQ(b0, 7);
  EXPECT_EQ(b1, -1);
  // The data pointer is the mapping at 8 + N + begin.
  EXPECT_EQ(f.data(b) - f.data(w), 12);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));

  // And the writer produces exactly these bytes for the same tensors.
  const std::string out = p("hand_rewritten.safetensors");
  st::write_file(out, {{"w", DType::BF16, {2, 3}}, {"bias", DType::I64, {2}}},
                 {Bytes(data.begin(), data.begin() + 12), Bytes(data.begin() + 12, data.end())});
  EXPECT_EQ(r1dist::test::read_text(out), bytes);
}

TEST_F(SafetensorsReader, AcceptsUnpaddedHeaderAndEmptyFile) {
  // The reference's doc example: a 60-byte header, not padded, I32 [2, 2] of zeros.
  const std::string doc = std::string("<\0\0\0\0\0\0\0", 8) +
                          "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}" +
                          std::string(16, '\0');
  const st::File f = st::File::open(put("doc.safetensors", doc));
  EXPECT_EQ(f.at("test").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(f.metadata().empty());

  const st::File e = st::File::open(put("empty.safetensors", raw_file("{}", "")));
  EXPECT_TRUE(e.tensors().empty());
}

TEST_F(SafetensorsReader, ZeroSizeTensorsAtBoundaries) {
  const std::string header =
      "{\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"z1\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}";
  const st::File f = st::File::open(put("zeros.safetensors", raw_file(header, "abcd")));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "z0");
  EXPECT_EQ(f.tensors()[2].name, "z1");
  EXPECT_EQ(f.at("z1").nbytes(), 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(f.at("a"))), 4), "abcd");
}

TEST_F(SafetensorsReader, MoveKeepsMappingAlive) {
  const std::string path = put(
      "mv.safetensors", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", "xyz"));
  st::File f = st::File::open(path);
  const uint8_t* ptr = f.data(f.at("a"));
  st::File g = std::move(f);
  EXPECT_EQ(g.data(g.at("a")), ptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ptr), 3), "xyz");
  st::File h = st::File::open(path);
  h = std::move(g);
  EXPECT_EQ(h.data(h.at("a")), ptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h.data(h.at("a"))), 3), "xyz");
}

TEST_F(SafetensorsReaderErrors, MissingAndShortFiles) {
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(p("nope.safetensors")); },
                                     {"nope.safetensors", "cannot open", "No such file"}));
  const std::string s = put("short.safetensors", std::string("\x10\0\0\0\0", 5));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(s); }, {"short.safetensors", "5 bytes", "shorter than the 8-byte"}));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(dir_); }, {dir_, "not a regular file"}));
}

TEST_F(SafetensorsReaderErrors, TruncatedInHeader) {
  const std::string full =
      raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", std::string(8, '\1'));
  const uint64_t n = full.size() - 8 - 8;
  const std::string cut = full.substr(0, 8 + n / 2);
  const std::string path = put("cut_header.safetensors", cut);
  EXPECT_TRUE(ThrowsWith<UsageError>(
      [&] { st::File::open(path); },
      {"cut_header.safetensors", "header length " + std::to_string(n) + " runs past the end of the file (" +
                                     std::to_string(cut.size()) + " bytes)"}));
}

TEST_F(SafetensorsReaderErrors, TruncatedInData) {
  const std::string full = raw_file(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"last\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]}}",
      std::string(24, '\1'));
  const std::string path = put("cut_data.safetensors", full.substr(0, full.size() - 3));
  EXPECT_TRUE(ThrowsWith<UsageError>(
      [&] { st::File::open(path); },
      {"cut_data.safetensors", "tensor 'last'", "[8, 24)", "run past the end of the file", "holds 21 bytes", "HINT"}));
}

TEST_F(SafetensorsReaderErrors, HeaderLengthPastFile) {
  const std::string path =
      put("past.safetensors", le64(1000) + std::string("{}      ") + std::string(34, ' '));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(path); },
                             {"past.safetensors", "header length 1000 runs past the end of the file (50 bytes)"}));
  // Exactly at the limit is still judged against the file size.
  const std::string at_limit = put("at_limit.safetensors", le64(st::kMaxHeaderBytes) + "{}      ");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(at_limit); }, {"at_limit.safetensors", "runs past the end"}));
}

TEST_F(SafetensorsReaderErrors, OversizedHeaderLength) {
  const std::string path = put("huge.safetensors", le64(st::kMaxHeaderBytes + 1) + "{}      ");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); },
                                     {"huge.safetensors", "header length 100000001 exceeds the limit of 100000000"}));
  const std::string max = put("max.safetensors", le64(~uint64_t{0}) + "{}      ");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(max); },
                                     {"max.safetensors", "header length 18446744073709551615 exceeds the limit"}));
}

TEST_F(SafetensorsReaderErrors, InvalidJsonUtf8AndNonObject) {
  const std::string bad = put("bad_json.safetensors", raw_file("{\"a\": {\"dtype\":", ""));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(bad); }, {"bad_json.safetensors", "header is not valid UTF-8 JSON"}));
  const std::string utf =
      put("bad_utf8.safetensors",
          raw_file("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(utf); }, {"bad_utf8.safetensors", "not valid UTF-8 JSON", "UTF-8"}));
  const std::string arr = put("array.safetensors", raw_file("[1,2]", ""));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(arr); }, {"array.safetensors", "header is a JSON array"}));
  const std::string trailing = put("trailing.safetensors", raw_file("{} {}", ""));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(trailing); }, {"trailing.safetensors", "not valid UTF-8 JSON"}));
  std::string deep(200, '[');
  deep += std::string(200, ']');
  const std::string nested = put("deep.safetensors", raw_file("{\"a\":" + deep + "}", ""));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(nested); }, {"deep.safetensors", "nested deeper than 64"}));
}

TEST_F(SafetensorsReaderErrors, DuplicateTensorName) {
  const std::string path =
      put("dup.safetensors", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                      "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                                      "xy"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); }, {"dup.safetensors", "duplicate key 'a'"}));
}

TEST_F(SafetensorsReaderErrors, EntryFieldsMissingOrWrongType) {
  struct Case {
    const char* entry;
    const char* cause;
  };
  const Case cases[] = {
      {"{\"shape\":[1],\"data_offsets\":[0,4]}", "missing field \"dtype\""},
      {"{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", "missing field \"shape\""},
      {"{\"dtype\":\"F32\",\"shape\":[1]}", "missing field \"data_offsets\""},
      {"{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}", "\"dtype\" is a JSON number (32), not a string"},
      {"{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}",
       "\"shape\" is a JSON string (\"1\"), not an array"},
      {"{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}",
       "\"shape[0]\" is a JSON number (1.0), not an integer"},
      {"{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}",
       "\"data_offsets\" must be two non-negative"},
      {"{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}",
       "\"data_offsets\" must be two non-negative"},
      {"{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"begin\":0}}", "\"data_offsets\" must be two"},
      {"[0,4]", "entry is a JSON array (2 elements), not an object"},
  };
  for (const auto& c : cases) {
    const std::string path =
        put("fields.safetensors", raw_file(std::string("{\"t.w\":") + c.entry + "}", std::string(4, '\0')));
    EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); }, {"fields.safetensors", "tensor 't.w'", c.cause}))
        << c.entry;
  }
}

TEST_F(SafetensorsReaderErrors, UnknownDtype) {
  const std::string path =
      put("dtype.safetensors",
          raw_file("{\"x\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); },
                                     {"dtype.safetensors", "tensor 'x'", "unknown dtype \"F33\""}));
}

TEST_F(SafetensorsReaderErrors, NegativeDimsAndOverflow) {
  const std::string neg =
      put("neg.safetensors",
          raw_file("{\"x\":{\"dtype\":\"U8\",\"shape\":[-1,4],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(neg); },
                                     {"neg.safetensors", "tensor 'x'", "negative dimension", "[-1, 4]"}));
  const std::string big =
      put("ovf.safetensors",
          raw_file("{\"x\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
                   "abcd"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(big); },
                                     {"ovf.safetensors", "tensor 'x'", "overflows the element count"}));
  // numel fits in int64 but numel * 8 does not fit in uint64.
  const std::string bytes = put(
      "ovf_bytes.safetensors",
      raw_file("{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(bytes); }, {"ovf_bytes.safetensors", "overflows the byte count"}));
  const std::string huge_dim = put(
      "dim.safetensors",
      raw_file("{\"x\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],\"data_offsets\":[0,4]}}", "abcd"));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(huge_dim); }, {"dim.safetensors", "too large for a 64-bit integer"}));
}

TEST_F(SafetensorsReaderErrors, BeginAfterEnd) {
  const std::string path =
      put("order.safetensors",
          raw_file("{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", "abcd"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); },
                                     {"order.safetensors", "tensor 'x'", "[4, 0) begin after end"}));
}

TEST_F(SafetensorsReaderErrors, ShapeSizeMismatch) {
  const std::string path =
      put("model.safetensors",
          raw_file("{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,12]}}",
                   std::string(12, '\0')));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(path); },
                             {"model.safetensors: tensor 'model.norm.weight': data_offsets [0, 12) hold 12 bytes "
                              "but F32 [4, 4] needs 64",
                              "shape/size mismatch"}));
}

TEST_F(SafetensorsReaderErrors, OffsetsOutsideFile) {
  const std::string path =
      put("oob.safetensors", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                      "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[1000,1008]}}",
                                      std::string(8, 'a')));
  EXPECT_TRUE(ThrowsWith<UsageError>(
      [&] { st::File::open(path); },
      {"oob.safetensors", "tensor 'b'", "[1000, 1008) run past the end of the file", "data region holds 8 bytes"}));
  // end near 2^64: begin > end is caught, and end - begin is never taken on such values.
  const std::string wrap =
      put("wrap.safetensors",
          raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[18446744073709551615,7]}}",
                   "abcdefgh"));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(wrap); }, {"wrap.safetensors", "tensor 'a'", "begin after end"}));
}

TEST_F(SafetensorsReaderErrors, OverlappingTensorsNamesBoth) {
  const std::string path = put(
      "overlap.safetensors", raw_file("{\"first\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                      "\"second\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                                      std::string(12, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(path); },
                                     {"overlap.safetensors", "tensors 'first' [0, 8) and 'second' [4, 12) overlap"}));
  // One shared byte is enough; the sizes still add up to the data region.
  const std::string one =
      put("one_byte.safetensors", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                                           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[3,7]}}",
                                           std::string(7, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(one); },
                                     {"one_byte.safetensors", "'a' [0, 4) and 'b' [3, 7) overlap"}));
  // The same range twice is an overlap too (two names aliasing one buffer).
  const std::string alias =
      put("alias.safetensors", raw_file("{\"p\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                        "\"q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                                        std::string(8, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(alias); },
                                     {"alias.safetensors", "'p' [0, 8) and 'q' [0, 8) overlap"}));
  // A zero-size tensor pointing inside another one.
  const std::string inside =
      put("inside.safetensors", raw_file("{\"big\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                         "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,3]}}",
                                         std::string(8, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(inside); },
                                     {"inside.safetensors", "'big' [0, 8) and 'z' [3, 3) overlap"}));
}

TEST_F(SafetensorsReaderErrors, GapsAndUncoveredBytes) {
  const std::string gap =
      put("gap.safetensors", raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                                      std::string(12, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>(
      [&] { st::File::open(gap); },
      {"gap.safetensors", "gap", "bytes [4, 8) between tensor 'a' and tensor 'b'", "contiguous"}));
  const std::string lead =
      put("lead.safetensors",
          raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", std::string(8, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(lead); },
                                     {"lead.safetensors", "bytes [0, 4) before the first tensor 'a'"}));
  const std::string tail =
      put("tail.safetensors",
          raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", std::string(9, '\0')));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(tail); }, {"tail.safetensors", "data region holds 9 bytes",
                                                                     "cover only [0, 4)", "5 trailing bytes"}));
  const std::string none = put("none.safetensors", raw_file("{}", "junk"));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::File::open(none); }, {"none.safetensors", "4 trailing bytes"}));
}

TEST_F(SafetensorsReaderErrors, MetadataMustBeObjectOfStrings) {
  const std::string num =
      put("meta_num.safetensors", raw_file("{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", ""));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(num); },
                             {"meta_num.safetensors", "\"__metadata__.step\" is a JSON number (3), not a string"}));
  const std::string arr = put("meta_arr.safetensors", raw_file("{\"__metadata__\":[\"pt\"]}", ""));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::File::open(arr); },
                             {"meta_arr.safetensors", "\"__metadata__\" is a JSON array (1 element), not an object"}));
}

TEST_F(SafetensorsReaderErrors, UnknownTensorNamesFileAndTensor) {
  const std::string path = put(
      "one.safetensors", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"));
  const st::File f = st::File::open(path);
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { f.at("model.norm.weight"); }, {"one.safetensors", "no tensor 'model.norm.weight'"}));
  st::TensorInfo foreign = f.at("a");
  foreign.begin = 0;
  foreign.end = 4096;
  // A TensorInfo of another file is the caller's mistake, not the file's: a runtime Error.
  EXPECT_TRUE(ThrowsWith([&] { f.data(foreign); }, {"one.safetensors", "tensor 'a'", "do not belong to this file"}));
}

TEST_F(SafetensorsWriter, RejectsBadSpecsWithoutLeavingFiles) {
  const std::string path = p("bad.safetensors");
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"x", DType::U8, {1}}, {"x", DType::U8, {1}}}, {{1}, {2}});
      },
      {"bad.safetensors", "tensor 'x'", "duplicate tensor name"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"x", DType::F32, {2, -3}}}, std::vector<Bytes>{Bytes{}});
      },
      {"bad.safetensors", "tensor 'x'", "negative dimension"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"__metadata__", DType::U8, {1}}}, {{1}});
      },
      {"bad.safetensors", "reserved"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"w", DType::BF16, {2, 2}}}, {Bytes(6)});
      },
      {"bad.safetensors", "tensor 'w'", "6 bytes given but BF16 [2, 2] needs 8"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"w", DType::U8, {1}}}, std::vector<Bytes>{});
      },
      {"bad.safetensors", "0 byte buffers given for 1 tensors"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_file(path, {{"bad\xff", DType::U8, {1}}}, {{1}});
      },
      {"bad.safetensors", "not valid UTF-8"}));
  EXPECT_TRUE(ThrowsWith([&] { st::write_file(p("no_such_dir/x.safetensors"), {}, std::vector<Bytes>{}); },
                         {"no_such_dir/x.safetensors.tmp", "cannot create"}));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsWriter, FailedFillKeepsPreviousFile) {
  const std::string path = p("keep.safetensors");
  st::write_file(path, {{"v", DType::U8, {3}}}, {{1, 2, 3}});
  const std::string before = r1dist::test::read_text(path);
  EXPECT_THROW(st::write_file(path, {{"v", DType::U8, {3}}, {"w", DType::U8, {2}}},
                              [](size_t i, uint8_t* dst, size_t n) {
                                if (i == 1) throw std::runtime_error("fill failed");
                                std::memset(dst, 9, n);
                              }),
               std::runtime_error);
  EXPECT_EQ(r1dist::test::read_text(path), before);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsWriter, OutputLargerThanWriteBuffer) {
  // Many small tensors that cross buffer flushes, and one tensor bigger than the buffer.
  std::vector<st::WriteSpec> specs;
  for (int i = 0; i < 40; ++i)
    specs.push_back({"small." + std::to_string(i), DType::U8, {1000 + 37 * i, 300}});
  specs.insert(specs.begin() + 17,
               {"big", DType::F32, {static_cast<int64_t>(st::kWriteBufferBytes / 4 + 1001)}});
  specs.push_back({"tail", DType::I16, {0}});
  specs.push_back({"last", DType::I16, {5}});
  auto byte_at = [](size_t i, size_t k) { return static_cast<uint8_t>(i * 131 + k * 7 + (k >> 9)); };

  std::vector<size_t> calls;
  std::vector<size_t> sizes;
  uint64_t total = 0;
  const std::string path = p("large.safetensors");
  st::write_file(path, specs, [&](size_t i, uint8_t* dst, size_t n) {
    calls.push_back(i);
    sizes.push_back(n);
    for (size_t k = 0; k < n; ++k) dst[k] = byte_at(i, k);
    total += n;
  });
  ASSERT_GT(total, 2 * st::kWriteBufferBytes);
  ASSERT_EQ(calls.size(), specs.size());
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i], i) << "fill called out of order";

  const st::File f = st::File::open(path);
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& t = f.at(specs[i].name);
    ASSERT_EQ(t.nbytes(), sizes[i]) << t.name;
    const uint8_t* d = f.data(t);
    size_t bad = 0;
    for (size_t k = 0; k < t.nbytes(); ++k) bad += d[k] != byte_at(i, k);
    EXPECT_EQ(bad, 0u) << t.name << ": " << bad << " wrong bytes";
  }
  std::string head(8, '\0');
  std::ifstream(path, std::ios::binary).read(head.data(), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(head[i])) << (8 * i);
  EXPECT_EQ(fs::file_size(path), 8 + n + total);  // packed: no gaps, nothing trailing
}

TEST_F(SafetensorsReference, ReferenceImplementationTestVectors) {
  // Byte vectors from huggingface/safetensors tensor.rs tests (test_serialization_forced_alignement
  // and test_empty): what the reference writer emits.
  const uint8_t aligned[] = {
      72,  0,   0,   0,  0,  0,  0,  0,  123, 34,  97, 116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
      121, 112, 101, 34, 58, 34, 70, 51, 50,  34,  44, 34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
      44,  49,  44,  50, 44, 51, 93, 44, 34,  100, 97, 116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
      34,  58,  91,  48, 44, 50, 52, 93, 125, 125, 32, 32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
      0,   0,   128, 63, 0,  0,  0,  64, 0,   0,   64, 64,  0,   0,   128, 64,  0,   0,   160, 64};
  const std::string path =
      put("attn0.safetensors", std::string(reinterpret_cast<const char*>(aligned), sizeof aligned));
  const st::File f = st::File::open(path);
  const auto& t = f.at("attn0");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{1, 1, 2, 3}));
  float v[6];
  std::memcpy(v, f.data(t), sizeof v);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(v[i], static_cast<float>(i));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data(t)) % 8, 0u);  // padding keeps data 8-aligned

  const std::string out = p("attn0_rewritten.safetensors");
  st::write_file(out, {{"attn0", DType::F32, {1, 1, 2, 3}}}, {Bytes(f.data(t), f.data(t) + 24)}, {});
  EXPECT_EQ(r1dist::test::read_text(out), r1dist::test::read_text(path));

  const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
  st::write_file(p("empty.safetensors"), {}, std::vector<Bytes>{}, {});
  EXPECT_EQ(r1dist::test::read_text(p("empty.safetensors")), std::string(reinterpret_cast<const char*>(empty), sizeof empty));
  const uint8_t empty_meta[] = {40,  0,   0,   0,  0,  0,  0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
                                100, 97,  116, 97, 95, 95, 34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
                                111, 114, 107, 34, 58, 34, 112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
  st::write_file(p("empty_meta.safetensors"), {}, std::vector<Bytes>{}, {{"framework", "pt"}});
  EXPECT_EQ(r1dist::test::read_text(p("empty_meta.safetensors")),
            std::string(reinterpret_cast<const char*>(empty_meta), sizeof empty_meta));
  const st::File empty_meta_file = st::File::open(p("empty_meta.safetensors"));
  EXPECT_EQ(empty_meta_file.metadata().at("framework"), "pt");
}

// Rewrites every tensor of f, in offset order with the same metadata, and expects the exact
// bytes back: the reference writer orders by dtype alignment then name, and our writer keeps
// the order given.
static void expect_rewrite_identical(const st::File& f, const std::string& out) {
  std::vector<st::WriteSpec> specs;
  for (const auto& t : f.tensors()) specs.push_back({t.name, t.dtype, t.shape});
  st::write_file(
      out, specs,
      [&](size_t i, uint8_t* dst, size_t n) {
        ASSERT_EQ(n, f.tensors()[i].nbytes());
        std::memcpy(dst, f.data(f.tensors()[i]), n);
      },
      f.metadata());
  EXPECT_EQ(r1dist::test::read_text(out), r1dist::test::read_text(f.path())) << "rewrite of " << f.path() << " differs";
}

TEST_F(SafetensorsReference, HfTransformersSingleFile) {
  const st::Checkpoint c = st::Checkpoint::open_dir(fixture("qwen2_a"));
  ASSERT_EQ(c.files().size(), 1u);
  EXPECT_EQ(c.names().size(), 3u + 2u * 12u);  // embed, norm, lm_head + 12 per layer
  const auto& e = c.info("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::BF16);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{320, 64}));
  EXPECT_EQ(c.info("model.layers.1.self_attn.k_proj.bias").shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(c.files()[0].metadata().at("format"), "pt");
  EXPECT_EQ(fs::path(c.file_of("lm_head.weight")).filename(), "model.safetensors");
  expect_rewrite_identical(c.files()[0], p("qwen2_a.safetensors"));
}

TEST_F(SafetensorsReference, HfTransformersShardedDir) {
  const std::string dir = fixture("qwen2_b");
  const st::Checkpoint c = st::Checkpoint::open_dir(dir);
  ASSERT_EQ(c.files().size(), 6u);
  EXPECT_EQ(c.names().size(), 3u + 3u * 12u);
  const auto index = nlohmann::json::parse(r1dist::test::read_text(dir + "/model.safetensors.index.json"));
  uint64_t total = 0;
  for (const auto& name : c.names()) {
    total += c.info(name).nbytes();
    EXPECT_EQ(fs::path(c.file_of(name)).filename().string(), index["weight_map"][name].get<std::string>())
        << name;
  }
  EXPECT_EQ(total, index["metadata"]["total_size"].get<uint64_t>());
  EXPECT_EQ(c.info("model.embed_tokens.weight").dtype, DType::F32);
  for (size_t i = 0; i < c.files().size(); ++i)
    expect_rewrite_identical(c.files()[i], p("shard" + std::to_string(i) + ".safetensors"));
}

TEST_F(SafetensorsModelDir, ShardedWriteReadsBackExactly) {
  // Sizes 40 40 40 300 16 0 84 8 with max 100 -> shards {0,1} {2} {3} {4,5,6} {7}.
  const std::vector<st::WriteSpec> specs = {
      {"a", DType::F32, {10}},    {"b", DType::BF16, {4, 5}}, {"c", DType::I64, {5}},
      {"huge", DType::F32, {75}}, {"d", DType::U16, {8}},     {"zero", DType::F32, {0, 3}},
      {"e", DType::U8, {2, 42}},  {"f", DType::F64, {1}},
  };
  std::vector<Bytes> data;
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : specs[i].shape) n *= d;
    data.push_back(pattern(static_cast<size_t>(n) * st::dtype_size(specs[i].dtype), 7 + i));
  }
  std::vector<size_t> calls;
  const std::string dir = p("out");
  const auto files = st::write_model_dir(
      dir, specs,
      [&](size_t i, uint8_t* dst, size_t n) {
        calls.push_back(i);
        ASSERT_EQ(n, data[i].size());
        if (n) std::memcpy(dst, data[i].data(), n);
      },
      100);
  EXPECT_EQ(calls, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7}));

  std::vector<std::string> expect_files;
  for (int s = 1; s <= 5; ++s)
    expect_files.push_back(dir + "/model-0000" + std::to_string(s) + "-of-00005.safetensors");
  expect_files.push_back(dir + "/model.safetensors.index.json");
  EXPECT_EQ(files, expect_files);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));

  const auto index = nlohmann::json::parse(r1dist::test::read_text(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 528u);
  const std::map<std::string, int> shard_of = {{"a", 1}, {"b", 1},    {"c", 2}, {"huge", 3},
                                               {"d", 4}, {"zero", 4}, {"e", 4}, {"f", 5}};
  ASSERT_EQ(index["weight_map"].size(), shard_of.size());
  for (const auto& [name, s] : shard_of)
    EXPECT_EQ(index["weight_map"][name].get<std::string>(),
              "model-0000" + std::to_string(s) + "-of-00005.safetensors")
        << name;
  for (int s = 1; s <= 5; ++s) {
    uint64_t bytes = 0;
    const st::File shard = st::File::open(expect_files[s - 1]);
    for (const auto& t : shard.tensors()) bytes += t.nbytes();
    EXPECT_TRUE(bytes <= 100 || s == 3) << "shard " << s << " holds " << bytes;
  }

  const st::Checkpoint c = st::Checkpoint::open_dir(dir);
  EXPECT_EQ(c.dir(), dir);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c", "d", "e", "f", "huge", "zero"}));
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& name = specs[i].name;
    ASSERT_TRUE(c.contains(name));
    EXPECT_EQ(c.info(name).dtype, specs[i].dtype) << name;
    EXPECT_EQ(c.info(name).shape, specs[i].shape) << name;
    EXPECT_EQ(Bytes(c.data(name), c.data(name) + c.info(name).nbytes()), data[i]) << name;
    EXPECT_EQ(c.file_of(name), expect_files[shard_of.at(name) - 1]) << name;
  }
  EXPECT_FALSE(c.contains("nope"));
  EXPECT_EQ(c.files()[0].metadata().at("format"), "pt");
}

TEST_F(SafetensorsModelDir, SmallModelIsOneFileAndLayoutSwitchesCleanly) {
  const std::vector<st::WriteSpec> specs = {{"x", DType::F32, {8}}, {"y", DType::F32, {8}}};
  auto fill = [](size_t i, uint8_t* dst, size_t n) { std::memset(dst, static_cast<int>(i + 1), n); };
  const std::string dir = p("m");

  EXPECT_EQ(st::write_model_dir(dir, specs, fill, 1 << 20),
            (std::vector<std::string>{dir + "/model.safetensors"}));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(st::Checkpoint::open_dir(dir).data("y")[0], 2);

  // Re-saving sharded removes the now stale single file, and back again.
  EXPECT_EQ(st::write_model_dir(dir, specs, fill, 32).size(), 3u);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  const auto sharded = st::Checkpoint::open_dir(dir);
  EXPECT_EQ(sharded.files().size(), 2u);
  EXPECT_EQ(sharded.data("x")[31], 1);
  st::write_model_dir(dir, specs, fill, 64);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(st::Checkpoint::open_dir(dir).files().size(), 1u);
}

TEST_F(SafetensorsModelDir, FollowsSymlinkedShardsLikeTheHfCache) {
  // HF cache snapshots hold symlinks into ../../blobs; the names in the index stay plain.
  const std::string snap = p("snapshots/abc"), blobs = p("blobs");
  fs::create_directories(snap);
  fs::create_directories(blobs);
  for (const auto& e : fs::directory_iterator(fixture("qwen2_b"))) {
    const std::string name = e.path().filename().string();
    fs::copy_file(e.path(), blobs + "/blob_" + name);
    fs::create_symlink("../../blobs/blob_" + name, snap + "/" + name);
  }
  const st::Checkpoint c = st::Checkpoint::open_dir(snap);
  EXPECT_EQ(c.names().size(), 39u);
  EXPECT_EQ(fs::path(c.file_of("lm_head.weight")).filename(), "model-00006-of-00006.safetensors");
}

TEST_F(SafetensorsModelDir, RejectsDuplicatesAcrossShards) {
  const std::string dir = p("dups");
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_model_dir(
            dir, {{"x", DType::F32, {8}}, {"y", DType::F32, {8}}, {"x", DType::F32, {8}}},
            [](size_t, uint8_t*, size_t) {}, 32);
      },
      {"dups", "tensor 'x'", "duplicate tensor name"}));
  EXPECT_FALSE(fs::exists(dir + "/model-00001-of-00003.safetensors"));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        st::write_model_dir(
            dir, {}, [](size_t, uint8_t*, size_t) {}, 0);
      },
      {"dups", "max_shard_bytes must be positive"}));
}

namespace {
// Writes a 3-shard directory (a b | c d | e, F32 [4] each) and returns its index JSON.
nlohmann::json write_three_shards(const std::string& dir) {
  std::vector<st::WriteSpec> specs;
  for (const char* n : {"a", "b", "c", "d", "e"}) specs.push_back({n, DType::F32, {4}});
  st::write_model_dir(
      dir, specs, [](size_t i, uint8_t* dst, size_t n) { std::memset(dst, int(i), n); }, 32);
  return nlohmann::json::parse(r1dist::test::read_text(dir + "/model.safetensors.index.json"));
}
}  // namespace

TEST_F(SafetensorsCheckpointErrors, MissingShard) {
  const std::string dir = p("ckpt");
  write_three_shards(dir);
  fs::remove(dir + "/model-00002-of-00003.safetensors");
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                             {"model.safetensors.index.json names shard 'model-00002-of-00003.safetensors' (for "
                              "tensor 'c' and 1 more), which does not exist in " +
                                  dir,
                              "HINT"}));
}

TEST_F(SafetensorsCheckpointErrors, TensorInIndexButNotInShard) {
  const std::string dir = p("ckpt");
  auto index = write_three_shards(dir);
  index["weight_map"]["ghost"] = "model-00003-of-00003.safetensors";
  r1dist::test::write_text(dir + "/model.safetensors.index.json", index.dump());
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                             {"model.safetensors.index.json",
                              "tensor 'ghost' in shard 'model-00003-of-00003.safetensors'", "does not hold it"}));
}

TEST_F(SafetensorsCheckpointErrors, TensorInShardButNotInIndex) {
  const std::string dir = p("ckpt");
  auto index = write_three_shards(dir);
  index["weight_map"].erase("d");
  r1dist::test::write_text(dir + "/model.safetensors.index.json", index.dump());
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                             {"model-00002-of-00003.safetensors: tensor 'd' is not listed in the \"weight_map\"",
                              "model.safetensors.index.json"}));
}

TEST_F(SafetensorsCheckpointErrors, SameTensorInTwoShards) {
  const std::string dir = p("ckpt");
  fs::create_directories(dir);
  st::write_file(dir + "/one.safetensors", {{"x", DType::U8, {1}}, {"y", DType::U8, {1}}}, {{1}, {2}});
  st::write_file(dir + "/two.safetensors", {{"x", DType::U8, {1}}, {"z", DType::U8, {1}}}, {{3}, {4}});
  r1dist::test::write_text(
      dir + "/model.safetensors.index.json",
      R"({"metadata":{"total_size":4},"weight_map":{"x":"one.safetensors","y":"one.safetensors","z":"two.safetensors"}})");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                                     {"model.safetensors.index.json",
                                      "tensor 'x' is in shard 'two.safetensors' and also in "
                                      "'one.safetensors'"}));
}

TEST_F(SafetensorsCheckpointErrors, ShardNamesMustStayInsideDir) {
  const std::string dir = p("ckpt");
  fs::create_directories(dir);
  st::write_file(p("outside.safetensors"), {{"x", DType::U8, {1}}}, {{1}});
  for (const char* shard : {"../outside.safetensors", "sub/x.safetensors", "/etc/passwd", ""}) {
    r1dist::test::write_text(dir + "/model.safetensors.index.json", std::string(R"({"weight_map":{"x":")") + shard + "\"}}");
    EXPECT_TRUE(ThrowsWith<UsageError>(
        [&] { st::Checkpoint::open_dir(dir); },
        {"model.safetensors.index.json", "tensor 'x'", std::string("shard '") + shard + "'", "plain file names"}))
        << shard;
  }
}

TEST_F(SafetensorsCheckpointErrors, InvalidIndexJson) {
  const std::string dir = p("ckpt");
  fs::create_directories(dir);
  const std::string index = dir + "/model.safetensors.index.json";
  const std::pair<const char*, const char*> cases[] = {
      {"{\"weight_map\": {", "index is not valid UTF-8 JSON"},
      {"[]", "index is a JSON array (0 elements), not an object"},
      {"{\"metadata\":{}}", "missing field \"weight_map\""},
      {"{\"weight_map\":[\"a\"]}", "\"weight_map\" is a JSON array (1 element), not an object"},
      {"{\"weight_map\":{\"a\":1}}", "\"weight_map.a\" is a JSON number (1), not a string"},
      {"{\"weight_map\":{}}", "\"weight_map\" is empty"},
      {"{\"weight_map\":{\"a\":\"s.safetensors\",\"a\":\"t.safetensors\"}}", "duplicate key 'a'"},
  };
  for (const auto& [text, cause] : cases) {
    r1dist::test::write_text(index, text);
    EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); }, {"model.safetensors.index.json", cause}))
        << text;
  }
}

TEST_F(SafetensorsCheckpointErrors, NoModelFilesInDir) {
  const std::string dir = p("empty_model");
  fs::create_directories(dir);
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                                     {dir, "no model.safetensors or model.safetensors.index.json",
                                      "HINT: point model.path at a Hugging Face model directory"}));
  r1dist::test::write_text(dir + "/pytorch_model.bin", "not really");
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                                     {dir, "found pytorch_model.bin: only safetensors weights are read", "HINT"}));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(p("missing_dir")); },
                                     {"missing_dir", "no such directory", "HINT: point model.path"}));
  r1dist::test::write_text(p("plain_file"), "x");
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(p("plain_file")); }, {"plain_file", "not a directory"}));
}

TEST_F(SafetensorsCheckpointErrors, BothLayoutsPresent) {
  const std::string dir = p("both");
  write_three_shards(dir);
  st::write_file(dir + "/model.safetensors", {{"a", DType::F32, {4}}}, {Bytes(16)});
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                                     {dir, "holds both model.safetensors and model.safetensors.index.json", "HINT"}));
}

TEST_F(SafetensorsCheckpointErrors, UnknownTensorNamesDirAndTensor) {
  const std::string dir = p("ckpt");
  write_three_shards(dir);
  const auto c = st::Checkpoint::open_dir(dir);
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { c.info("model.norm.weight"); },
                                     {dir, "no tensor 'model.norm.weight'", "5 tensors"}));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { c.data("q"); }, {dir, "no tensor 'q'"}));
  EXPECT_TRUE(ThrowsWith<UsageError>([&] { c.file_of("q"); }, {dir, "no tensor 'q'"}));
}

TEST_F(SafetensorsCheckpointErrors, CorruptShardNamesShardFile) {
  const std::string dir = p("ckpt");
  write_three_shards(dir);
  const std::string shard = dir + "/model-00003-of-00003.safetensors";
  const std::string raw = r1dist::test::read_text(shard);
  r1dist::test::write_text(shard, raw.substr(0, raw.size() - 1));
  EXPECT_TRUE(
      ThrowsWith<UsageError>([&] { st::Checkpoint::open_dir(dir); },
                             {"model-00003-of-00003.safetensors", "tensor 'e'", "run past the end of the file"}));
}
