// Helpers shared by the tokenizer and data tests: the R1 tokenizer written by
// tools/install-deps.sh, JSON Lines files, and the parity corpus (made by node).
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "r1dist/tokenizer/tokenizer.h"
#include "support/process.h"
#include "support/temp.h"

namespace r1dist::test {

inline std::string r1_tokenizer_dir() { return R1DIST_TOKENIZER_DIR; }

// Loaded once per test process (loading parses 5 MB of JSON).
inline const Tokenizer& r1_tokenizer() {
  static const Tokenizer tok = [] {
    if (!std::filesystem::exists(r1_tokenizer_dir() + "/tokenizer.json"))
      throw std::runtime_error(r1_tokenizer_dir() + "/tokenizer.json is missing. HINT: run bash tools/install-deps.sh "
                               "(npm ci in tools/js, then node tools/js/make_r1_tokenizer.mjs .deps/tokenizer-r1)");
    return Tokenizer::load(r1_tokenizer_dir());
  }();
  return tok;
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

inline void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::string s;
  for (const auto& r : rows) s += r.dump() + "\n";
  write_text(path, s);
}

// The real rows of the training data set beside the checkout ("" when ../shared is absent).
inline std::string shared_sample_rows() {
  const auto d = shared_dir();
  return d.empty() ? "" : d + "/data/medical_o1_sample_en.json";
}

// The parity corpus, generated the same way for the tests, the benchmark and the HF script.
// Callers check node_available() and shared_sample_rows() first.
inline std::string make_corpus(const TempDir& tmp) {
  const std::string out = tmp / "corpus.jsonl";
  run_node("make_corpus.mjs " + shared_sample_rows() + " " + fixture("tokenizer/cases.jsonl") + " " +
           r1_tokenizer_dir() + " " + out);
  return out;
}

// The JavaScript reference's encoding of `texts` (node tools/js/reference.mjs): one object
// per text with "ids", "decoded" and "nfc". Callers check node_available() first.
inline std::vector<nlohmann::json> js_encode(const std::vector<nlohmann::json>& texts, bool add_special) {
  TempDir tmp;
  write_jsonl(tmp / "in.jsonl", texts);
  run_node(std::string("reference.mjs encode") + (add_special ? " --add-special" : "") + " --tokenizer " +
           r1_tokenizer_dir() + " --in " + (tmp / "in.jsonl") + " --out " + (tmp / "js.jsonl"));
  return read_jsonl(tmp / "js.jsonl");
}

inline std::string ids_str(const std::vector<int32_t>& ids) { return nlohmann::json(ids).dump(); }

}  // namespace r1dist::test
