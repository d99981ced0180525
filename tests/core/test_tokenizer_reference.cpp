// Parity with the JavaScript reference (@lenml/tokenizers), run live with node on the same
// tokenizer.json: the ids of every corpus text, decoding, invalid UTF-8 input, and the
// Unicode classes of the pre-tokenizer regex. Where the JS reference differs from HF
// tokenizers on purpose-chosen characters, r1dist follows HF and the test says so.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "r1dist/tokenizer/tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"
#include "support/tokenizer.h"

namespace r1dist::test {
namespace {

using nlohmann::json;

std::string excerpt(const std::string& s) {
  json j = s.size() > 160 ? s.substr(0, 160) + "..." : s;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

TEST(TokenizerReference, CorpusIdsMatchJavaScriptReference) {
  R1DIST_REQUIRE_NODE();
  if (shared_sample_rows().empty()) GTEST_SKIP() << "../shared/data is absent: the corpus needs its real rows";
  const auto& tok = r1_tokenizer();
  TempDir tmp;
  const auto corpus = make_corpus(tmp);
  run_node("reference.mjs encode --tokenizer " + r1_tokenizer_dir() + " --in " + corpus + " --out " + (tmp / "js.jsonl"));
  const auto texts = read_jsonl(corpus);
  const auto js = read_jsonl(tmp / "js.jsonl");
  ASSERT_EQ(texts.size(), js.size());
  ASSERT_GE(texts.size(), 2000u) << "the corpus must hold at least 2,000 texts";

  size_t mismatches = 0, decode_mismatches = 0, not_nfc = 0, bytes = 0, tokens = 0;
  std::ostringstream report;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    bytes += text.size();
    const auto ids = tok.encode(text);
    tokens += ids.size();
    const auto want = js[i]["ids"].get<std::vector<int32_t>>();
    if (ids != want) {
      if (++mismatches <= 5) {
        const size_t k = std::mismatch(ids.begin(), ids.end(), want.begin(), want.end()).first - ids.begin();
        report << "\n  text " << i << " " << excerpt(text) << ": first difference at id " << k << " (r1dist "
               << (k < ids.size() ? std::to_string(ids[k]) : "end") << ", JS "
               << (k < want.size() ? std::to_string(want[k]) : "end") << "), " << ids.size() << " vs "
               << want.size() << " ids";
      }
      continue;
    }
    const std::string decoded = tok.decode(ids);
    if (decoded != js[i]["decoded"].get<std::string>() && ++decode_mismatches <= 5)
      report << "\n  text " << i << " decodes to " << excerpt(decoded) << ", JS to " << excerpt(js[i]["decoded"]);
    if (decoded != js[i]["nfc"].get<std::string>() && ++not_nfc <= 5)
      report << "\n  text " << i << " decodes to " << excerpt(decoded) << ", not its NFC form " << excerpt(js[i]["nfc"]);
  }
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << texts.size() << " texts encode differently" << report.str();
  EXPECT_EQ(decode_mismatches, 0u) << report.str();
  EXPECT_EQ(not_nfc, 0u) << report.str();
  std::printf("[ parity   ] %zu texts, %zu bytes, %zu tokens: %zu id mismatches vs @lenml/tokenizers\n", texts.size(),
              bytes, tokens, mismatches);
}

TEST(TokenizerReference, AddSpecialMatchesJavaScriptReference) {
  R1DIST_REQUIRE_NODE();
  const auto& tok = r1_tokenizer();
  const std::vector<json> texts = {"Hello", "", "<｜begin▁of▁sentence｜>already", "28岁程序员，常年熬夜，头晕目眩，恶心"};
  const auto js = js_encode(texts, /*add_special=*/true);
  ASSERT_EQ(js.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i].get<std::string>(), true);
    EXPECT_EQ(ids_str(ids), js[i]["ids"].dump()) << excerpt(texts[i]);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 151646);
  }
}

// Invalid UTF-8: r1dist replaces each maximal ill-formed subpart by U+FFFD, as node's
// decoder does before the JS reference sees the text; the ids must then agree.
TEST(TokenizerReference, InvalidUtf8MatchesNodeDecoding) {
  R1DIST_REQUIRE_NODE();
  const auto& tok = r1_tokenizer();
  const std::vector<std::string> cases = {
      "\xff", "\xc0\xaf", "a\x80z", "\xe4\xbd", "\xe4\xbd\xa0\xe5", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80",
      "\xf0\x9f\x98", "x\xf0\x9f\x98\x80\xf0\x9fy", "\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
      "caf\xe9 latin-1", "<think>\xff</think>", "\xc2", "\xe0\x80\x80", "ok\xef\xbf\xbd" "already", "\xfe\xfe\xff\xff"};
  TempDir tmp;
  std::string hex;
  for (const auto& c : cases) {
    static const char* d = "0123456789abcdef";
    for (unsigned char b : c) hex += {d[b >> 4], d[b & 15]};
    hex += "\n";
  }
  write_text(tmp / "in.hex", hex);
  run_node("reference.mjs encode-hex --tokenizer " + r1_tokenizer_dir() + " --in " + (tmp / "in.hex") + " --out " +
               (tmp / "js.jsonl"));
  const auto js = read_jsonl(tmp / "js.jsonl");
  ASSERT_EQ(js.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(utf8_sanitize(cases[i]), js[i]["text"].get<std::string>()) << "case " << i;
    EXPECT_EQ(ids_str(tok.encode(cases[i])), js[i]["ids"].dump()) << "case " << i;
    EXPECT_EQ(tok.decode(tok.encode(cases[i])), js[i]["text"].get<std::string>()) << "case " << i;
  }
}

// \p{L}, \p{N} and \s, code point by code point, between the JS engine and r1dist's PCRE2
// translation. Allowed differences: U+0085 and U+FEFF (r1dist follows Oniguruma, i.e. HF),
// and code points that PCRE2's Unicode 14 tables call unassigned but node's newer Unicode
// has assigned since.
TEST(TokenizerReference, CharacterClassesMatchJavaScriptExceptDocumented) {
  R1DIST_REQUIRE_NODE();
  TempDir tmp;
  run_node("reference.mjs classes --out " + (tmp / "classes.json"));
  const json js = json::parse(read_text(tmp / "classes.json"));
  tok::MatchScratch scratch;
  const tok::Regex unassigned("\\A\\p{Cn}\\z", "test");
  struct Class {
    const char* name;
    std::string onig;
  };
  const std::vector<Class> classes = {{"L", "\\A\\p{L}\\z"}, {"N", "\\A\\p{N}\\z"}, {"s", "\\A\\s\\z"}};
  for (const auto& c : classes) {
    const tok::Regex re(tok::onig_to_pcre2(c.onig, "test"), "test");
    std::vector<bool> in_js(0x110000, false);
    for (const auto& r : js[c.name])
      for (uint32_t cp = r[0].get<uint32_t>(); cp <= r[1].get<uint32_t>(); ++cp) in_js[cp] = true;
    size_t newer = 0;
    std::vector<uint32_t> other;
    for (uint32_t cp = 0; cp < 0x110000; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      std::string s;
      tok::utf8_append(cp, s);
      size_t b, e;
      const bool ours = re.find(s, 0, scratch, b, e);
      if (ours == in_js[cp]) continue;
      if (unassigned.find(s, 0, scratch, b, e)) ++newer;
      else other.push_back(cp);
    }
    std::vector<uint32_t> expected;
    if (std::string(c.name) == "s") expected = {0x85, 0xFEFF};
    std::ostringstream os;
    for (size_t k = 0; k < std::min<size_t>(other.size(), 10); ++k) os << " U+" << std::hex << other[k];
    EXPECT_EQ(other, expected) << "class \\" << c.name << ": unexpected differences:" << os.str();
    std::printf("[ classes  ] \\%s: %zu code points differ only because node (Unicode %s) is newer than PCRE2 (14.0)\n",
                c.name, newer, js["unicode"].get<std::string>().c_str());
  }
}

// Where the JS reference and HF tokenizers disagree, r1dist gives HF's pieces (Oniguruma
// semantics) and the JS reference gives something else; the GPU-machine script checks the
// same texts against HF itself.
TEST(TokenizerReference, DocumentedJavaScriptDivergencesFollowHf) {
  R1DIST_REQUIRE_NODE();
  const auto& tok = r1_tokenizer();
  const auto cases = read_jsonl(fixture("tokenizer/js_divergent.jsonl"));
  ASSERT_FALSE(cases.empty());
  std::vector<json> texts;
  for (const auto& c : cases) texts.push_back(c["text"]);
  const auto js = js_encode(texts, /*add_special=*/false);
  ASSERT_EQ(js.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<int32_t> want;
    for (const auto& p : cases[i]["hf_pieces"]) {
      const auto ids = tok.encode(p.get<std::string>());
      want.insert(want.end(), ids.begin(), ids.end());
    }
    const auto ids = tok.encode(cases[i]["text"].get<std::string>());
    EXPECT_EQ(ids_str(ids), ids_str(want)) << cases[i]["why"];
    if (cases[i]["js_ids_differ"].get<bool>())
      EXPECT_NE(ids_str(ids), js[i]["ids"].dump()) << "the JS reference now agrees with HF here: " << cases[i]["why"];
    else
      EXPECT_EQ(ids_str(ids), js[i]["ids"].dump()) << cases[i]["why"];
  }
}

}  // namespace
}  // namespace r1dist::test
