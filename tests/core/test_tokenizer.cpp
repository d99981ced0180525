// Tokenizer unit tests: UTF-8 repair, byte-level table, merge order, the Oniguruma ->
// PCRE2 translation, load errors, the R1 tokenizer's special tokens, batch encoding, a
// 10 MB line, and the `r1dist tokenize` command.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "r1dist/base/error.h"
#include "r1dist/tokenizer/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"
#include "support/tokenizer.h"

namespace r1dist::test {
namespace {

using nlohmann::json;

constexpr const char* kQwenPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

// A small byte-level BPE tokenizer.json: the 256 byte tokens (ids 0..255) plus `extra`.
json tiny_tokenizer(const std::vector<std::string>& extra, const json& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tok::bytes_to_token(std::string(1, char(b)))] = b;
  int id = 256;
  for (const auto& e : extra) vocab[e] = id++;
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", json::array({{{"id", id}, {"content", "<think>"}, {"special", false}, {"normalized", false}},
                                        {{"id", id + 1}, {"content", "<eos>"}, {"special", true}, {"normalized", false}}})},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Split"}, {"pattern", {{"Regex", kQwenPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
          {"post_processor", {{"type", "ByteLevel"}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

std::string write_tokenizer(const TempDir& tmp, const json& j) {
  write_text(tmp / "tokenizer.json", j.dump());
  return tmp.path;
}

std::string load_error(const std::string& dir) {
  try {
    Tokenizer::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerUtf8, ReplacesMaximalSubparts) {
  // Unicode 15 §3.9, Table 3-8: one U+FFFD per maximal subpart.
  EXPECT_EQ(utf8_sanitize("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
  EXPECT_EQ(utf8_sanitize("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");         // overlong: never valid leads
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_sanitize("\xF4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // > U+10FFFF
  EXPECT_EQ(utf8_sanitize("\xE4\xBD"), "\xEF\xBF\xBD");                      // truncated at the end
  EXPECT_EQ(utf8_sanitize("ok \xE4\xBD\xA0 \xF0\x9F\x98\x80"), "ok \xE4\xBD\xA0 \xF0\x9F\x98\x80");
  EXPECT_TRUE(tok::utf8_is_valid(std::string("a\0b", 3)));
  EXPECT_EQ(tok::utf8_valid_prefix("abcdefghij\xFFxyz"), 10u);
}

TEST(TokenizerByteLevel, TableMatchesSpec) {
  const auto& t = tok::byte_to_unicode();
  EXPECT_EQ(t['!'], U'!');
  EXPECT_EQ(t[0], char32_t(0x100));
  EXPECT_EQ(t[' '], char32_t(0x120));  // 'Ġ'
  EXPECT_EQ(t['\n'], char32_t(0x10A)); // 'Ċ'
  EXPECT_EQ(t[127], char32_t(0x121));
  EXPECT_EQ(t[173], char32_t(0x143));
  EXPECT_EQ(t[174], char32_t(174));
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok::unicode_to_byte(t[b]), b);
  EXPECT_EQ(tok::bytes_to_token(" hello\n"), "\xC4\xA0hello\xC4\x8A");
  EXPECT_EQ(tok::token_to_bytes("\xC4\xA0hello"), " hello");
  EXPECT_EQ(tok::token_to_bytes("<｜User｜>"), "<｜User｜>");  // not all in the table: as written
}

TEST(TokenizerPattern, OnigurumaTranslation) {
  EXPECT_EQ(tok::onig_to_pcre2("\\s+(?!\\S)", "t"), "[\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}]+(?![^\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}])");
  EXPECT_EQ(tok::onig_to_pcre2("[^\\s\\p{L}]", "t"), "[^\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}\\p{L}]");
  EXPECT_EQ(tok::onig_to_pcre2("\\d\\h", "t"), "\\p{Nd}[0-9a-fA-F]");
  EXPECT_THROW(tok::onig_to_pcre2("\\w+", "t"), Error);
  EXPECT_THROW(tok::onig_to_pcre2("[^\\S]", "t"), Error);

  // The pieces of the Qwen regex, as HF (Oniguruma) cuts them.
  tok::PreTokenizer pt;
  pt.add_split(kQwenPattern, "test");
  tok::MatchScratch s;
  auto pieces = [&](const std::string& text) {
    std::vector<std::string> out;
    pt.split(text, s, [&](std::string_view p) { out.emplace_back(p); });
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("DON'T I'LL x'S"), (V{"DON", "'T", " I", "'LL", " x", "'S"}));
  EXPECT_EQ(pieces("IT'\u017Ft"), (V{"IT", "'\u017F", "t"}));  // Unicode case folding, as Oniguruma
  EXPECT_EQ(pieces("a  b   \n\n c"), (V{"a", " ", " b", "   \n\n", " c"}));  // \s*[\r\n]+ first
  EXPECT_EQ(pieces("x\r\n\r\ny"), (V{"x", "\r\n\r\n", "y"}));
  EXPECT_EQ(pieces("12345"), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(pieces("Ⅻ½²"), (V{"Ⅻ", "½", "²"}));  // \p{N} includes Nl and No
  EXPECT_EQ(pieces("hi!!\n\nok"), (V{"hi", "!!\n\n", "ok"}));
  EXPECT_EQ(pieces("  end  "), (V{" ", " end", "  "}));
  EXPECT_EQ(pieces("a\u0085\u0085b"), (V{"a", "\u0085", "\u0085b"}));  // NEL is \s in Oniguruma
  EXPECT_EQ(pieces("a\uFEFF\uFEFFb"), (V{"a", "\uFEFF\uFEFF", "b"}));   // BOM is not
}

TEST(TokenizerBpe, MergesByRankLeftmostFirst) {
  TempDir tmp;
  // ranks: 0 "b c", 1 "a b", 2 "a bc", 3 "x x"
  const auto dir = write_tokenizer(tmp, tiny_tokenizer({"bc", "ab", "abc", "xx"},
                                                       json::array({json::array({"b", "c"}), "a b",
                                                                    json::array({"a", "bc"}), "x x"})));
  const auto t = Tokenizer::load(dir);
  const int32_t bc = t.token_to_id("bc"), ab = t.token_to_id("ab"), abc = t.token_to_id("abc"), xx = t.token_to_id("xx");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{abc}));  // b+c (rank 0) before a+b (rank 1)
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{ab}));
  EXPECT_EQ(t.encode("abcab"), (std::vector<int32_t>{abc, ab}));
  EXPECT_EQ(t.encode("xxx"), (std::vector<int32_t>{xx, 'x'}));  // leftmost pair first
  EXPECT_EQ(t.encode("xxxx"), (std::vector<int32_t>{xx, xx}));
  EXPECT_EQ(t.encode("cb"), (std::vector<int32_t>{'c', 'b'}));
  EXPECT_EQ(bc, 256);
  EXPECT_EQ(t.vocab_size(), 262);
  EXPECT_EQ(t.encode("ab<think>ab"), (std::vector<int32_t>{ab, 260, ab}));
  EXPECT_EQ(t.decode({ab, 260, 261, 'c'}), "ab<think><eos>c");
  EXPECT_EQ(t.decode({ab, 260, 261, 'c'}, true), "ab<think>c");
  // Same long word through the heap path (> kSmallWord bytes) and through short pieces.
  std::string lng(500, 'x');
  EXPECT_EQ(t.encode(lng), std::vector<int32_t>(250, xx));
}

// HF semantics of the added-token flags: lstrip/rstrip swallow the whitespace around the
// token; a `normalized` token is matched in the NFC text, a raw one only in the raw text.
TEST(TokenizerAdded, StripAndNormalizedFlags) {
  TempDir tmp;
  auto j = tiny_tokenizer({}, json::array());
  j["added_tokens"].push_back({{"id", 258}, {"content", "<s>"}, {"lstrip", true}, {"rstrip", true}, {"normalized", false}, {"special", true}});
  j["added_tokens"].push_back({{"id", 259}, {"content", "\u00E9"}, {"normalized", true}, {"special", false}});
  j["added_tokens"].push_back({{"id", 260}, {"content", "\u00F1"}, {"normalized", false}, {"special", false}});
  const auto t = Tokenizer::load(write_tokenizer(tmp, j));
  using V = std::vector<int32_t>;
  EXPECT_EQ(t.encode("a \t <s>\n b"), (V{'a', 258, 'b'}));
  EXPECT_EQ(t.encode("<s> x"), (V{258, 'x'}));
  EXPECT_EQ(t.encode("xe\u0301y"), (V{'x', 259, 'y'}));   // NFC makes the token appear
  EXPECT_EQ(t.encode("x\u00E9y"), (V{'x', 259, 'y'}));
  EXPECT_EQ(t.encode("x\u00F1y"), (V{'x', 260, 'y'}));
  EXPECT_EQ(t.encode("xn\u0303y"), (V{'x', 0xC3, 0xB1, 'y'}));  // raw-only token: not matched after NFC
  // HF's ByteLevel decoder also maps an added token through the byte table when every
  // character of it is in the table: "é" (U+00E9) is byte 0xE9 there, alone not UTF-8.
  EXPECT_EQ(t.decode({'a', 258, 259}, true), "a\xEF\xBF\xBD");
  EXPECT_EQ(t.decode({258, 259, 0xA9, 0xA9}), "<s>\u9A69");  // E9 A9 A9 is one character
}

// The quadratic and the heap merge loops must give the same ids; checked on the real
// Qwen merges over random words of letters drawn from common tokens.
TEST(TokenizerBpe, SmallAndHeapMergeAgree) {
  const auto& r1 = r1_tokenizer();
  const json j = json::parse(read_text(r1_tokenizer_dir() + "/tokenizer.json"));
  tok::BpeMerges merges;
  for (const auto& m : j["model"]["merges"]) {
    const auto a = m[0].get<std::string>(), b = m[1].get<std::string>();
    merges.add(r1.token_to_id(a), r1.token_to_id(b), r1.token_to_id(a + b));
  }
  std::mt19937 rng(3407);
  const std::vector<std::string> alphabets = {"etaoinshrdlu ", "abc", "0123456789", "头晕目眩恶心程序员", "\xC4\xA0"};
  for (int trial = 0; trial < 3000; ++trial) {
    const auto& alpha = alphabets[trial % alphabets.size()];
    std::vector<int32_t> ids;
    const size_t n = 2 + rng() % 300;
    for (size_t k = 0; k < n; ++k) {
      const unsigned char byte = static_cast<unsigned char>(alpha[rng() % alpha.size()]);
      ids.push_back(r1.token_to_id(tok::bytes_to_token(std::string(1, char(byte)))));
    }
    auto a = ids, b = ids;
    merges.merge_small(a);
    merges.merge_heap(b);
    ASSERT_EQ(a, b) << "trial " << trial << " (" << n << " symbols)";
  }
}

TEST(TokenizerLoad, MalformedFilesNameTheField) {
  TempDir tmp;
  auto base = tiny_tokenizer({"ab"}, json::array({"a b"}));
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"missing model", [](json& j) { j.erase("model"); }, {"model: is missing"}},
      {"missing vocab", [](json& j) { j["model"].erase("vocab"); }, {"missing field \"model.vocab\""}},
      {"unknown pre-tokenizer", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace"; },
       {"pre_tokenizer.pretokenizers[0].type", "'Whitespace' is not supported"}},
      {"unknown merge token", [](json& j) { j["model"]["merges"].push_back("zz q"); },
       {"model.merges[1]", "'zz' is not in model.vocab"}},
      {"merged token absent", [](json& j) { j["model"]["merges"].push_back("c d"); },
       {"model.merges[1]", "merged token 'cd' is not in model.vocab"}},
      {"bad merge shape", [](json& j) { j["model"]["merges"].push_back(json::array({"a"})); }, {"model.merges[1]"}},
      {"unknown model", [](json& j) { j["model"]["type"] = "Unigram"; }, {"model.type", "'Unigram'"}},
      {"unknown normalizer", [](json& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, {"normalizer.type", "'Lowercase'"}},
      {"bad regex", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
       {"pre_tokenizer.pretokenizers[0].pattern", "does not compile"}},
      {"no byte level", [](json& j) { j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0]; },
       {"pre_tokenizer", "no ByteLevel step"}},
      {"missing byte", [](json& j) { j["model"]["vocab"].erase("A"); }, {"model.vocab", "byte 0x41"}},
      {"bad decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, {"decoder"}},
      {"wrong type", [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = 7; },
       {"\"pre_tokenizer.pretokenizers[0].behavior\" is a JSON number (7), not a string"}},
      {"processors not a list", [](json& j) {
         j["post_processor"] = {{"type", "Sequence"}, {"processors", {{"a", 1}}}};
       }, {"\"post_processor.processors\" is a JSON object (1 member), not an array"}},
      {"added token without content", [](json& j) { j["added_tokens"][0].erase("content"); },
       {"missing field \"added_tokens[0].content\""}},
      {"unsupported post-processor", [](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; },
       {"post_processor.type", "'BertProcessing'"}},
      {"template with unknown special", [](json& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"},
                                {"single", json::array({{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}})},
                                {"special_tokens", json::object()}};
       }, {"post_processor.special_tokens", "'<s>'"}},
  };
  for (const auto& c : cases) {
    json j = base;
    c.edit(j);
    const auto msg = load_error(write_tokenizer(tmp, j));
    EXPECT_NE(msg.find(tmp / "tokenizer.json"), std::string::npos) << c.what << ": " << msg;
    for (const auto& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << c.what << ": " << msg;
  }
  write_text(tmp / "tokenizer.json", "{\"model\": ");
  EXPECT_NE(load_error(tmp.path).find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_error(tmp / "nope").find("does not exist"), std::string::npos);

  write_tokenizer(tmp, base);
  write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<s>"})");
  const auto msg = load_error(tmp.path);
  EXPECT_NE(msg.find("tokenizer_config.json: bos_token: '<s>'"), std::string::npos) << msg;
}

TEST(TokenizerR1, SpecialTokensAndTemplate) {
  const auto& t = r1_tokenizer();
  EXPECT_EQ(t.vocab_size(), 151665);
  EXPECT_EQ(t.bos_id(), std::optional<int32_t>(151646));
  EXPECT_EQ(t.eos_id(), std::optional<int32_t>(151643));
  const std::vector<std::pair<const char*, int32_t>> added = {
      {"<｜end▁of▁sentence｜>", 151643}, {"<｜User｜>", 151644}, {"<｜Assistant｜>", 151645},
      {"<｜begin▁of▁sentence｜>", 151646}, {"<|EOT|>", 151647}, {"<think>", 151648}, {"</think>", 151649},
      {"<|quad_start|>", 151650}, {"<|video_pad|>", 151656}, {"<tool_call>", 151657}, {"<|file_sep|>", 151664}};
  for (const auto& [content, id] : added) {
    EXPECT_EQ(t.token_to_id(content), id) << content;
    EXPECT_EQ(t.id_to_token(id), content);
    EXPECT_EQ(t.encode(std::string("x") + content + "y").size(), 3u) << content << " must never be split";
    EXPECT_EQ(t.decode({id}), content);
  }
  EXPECT_TRUE(t.is_special(151643));
  EXPECT_FALSE(t.is_special(151648));
  EXPECT_EQ(t.token_to_id("<think"), -1);
  EXPECT_EQ(t.id_to_token(9707), "Hello");
  EXPECT_EQ(t.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  EXPECT_EQ(t.encode("Hello world", true), (std::vector<int32_t>{151646, 9707, 1879}));
  EXPECT_EQ(t.encode("", true), (std::vector<int32_t>{151646}));
  EXPECT_TRUE(t.encode("").empty());
  const auto ids = t.encode("<｜begin▁of▁sentence｜><｜User｜>头晕<｜Assistant｜><think>\n嗯</think>好<｜end▁of▁sentence｜>");
  EXPECT_EQ(ids.front(), 151646);
  EXPECT_EQ(ids.back(), 151643);
  EXPECT_EQ(t.decode(ids, true), "<｜User｜>头晕<｜Assistant｜><think>\n嗯</think>好");
  EXPECT_THROW(t.decode({151665}), Error);
  EXPECT_THROW(t.decode({-1}), Error);
  // A token split in the middle of a UTF-8 character decodes with U+FFFD, like the references.
  const auto e = t.encode("头");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(t.decode({t.token_to_id(tok::bytes_to_token("\xE5"))}), "\xEF\xBF\xBD");
  EXPECT_EQ(t.fingerprint().size(), 16u);
  EXPECT_EQ(Tokenizer::load(r1_tokenizer_dir() + "/tokenizer.json").fingerprint(), t.fingerprint());
}

TEST(TokenizerR1, BatchEqualsSingle) {
  const auto& t = r1_tokenizer();
  std::vector<std::string> texts;
  for (const auto& j : read_jsonl(fixture("tokenizer/cases.jsonl"))) texts.push_back(j.get<std::string>());
  for (int rep = 0; rep < 3; ++rep) texts.insert(texts.end(), texts.begin(), texts.begin() + 100);
  for (int threads : {1, 2, 4}) {
    const auto batch = t.encode_batch(texts, threads, true);
    ASSERT_EQ(batch.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) ASSERT_EQ(batch[i], t.encode(texts[i], true)) << "text " << i << ", " << threads << " threads";
  }
  EXPECT_TRUE(t.encode_batch({}, 2).empty());
}

// A 10 MB line: linear time, and the ids are those of its repeated unit.
TEST(TokenizerR1, TenMegabyteLine) {
  const auto& t = r1_tokenizer();
  const std::string unit = " The patient's blood pressure is 120/80 mmHg; 头晕目眩 ДАВЛЕНИЕ 😀";
  const size_t reps = 10'000'000 / unit.size() + 1;
  std::string line;
  line.reserve(reps * unit.size());
  for (size_t k = 0; k < reps; ++k) line += unit;
  const auto unit_ids = t.encode(unit);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = t.encode(line);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(ids.size(), unit_ids.size() * reps);
  for (size_t k = 0; k < reps; k += 997)
    ASSERT_TRUE(std::equal(unit_ids.begin(), unit_ids.end(), ids.begin() + k * unit_ids.size())) << "unit " << k;
  EXPECT_LT(s, 30.0) << "10 MB line took " << s << " s";

  // One 2 MB pre-token (a run of letters) goes through the heap merge loop.
  const std::string run(2'000'000, 'a');
  const auto t1 = std::chrono::steady_clock::now();
  const auto run_ids = t.encode(run);
  const double s1 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(t.decode(run_ids), run);
  EXPECT_LT(run_ids.size(), run.size() / 4);
  EXPECT_LT(s1, 30.0);
  std::printf("[ long     ] 10 MB line %.2f s, 2 MB single pre-token %.2f s\n", s, s1);
}

}  // namespace
}  // namespace r1dist::test
