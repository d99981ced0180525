// Helpers shared by the tokenizer tests: the R1 tokenizer written by tools/install-deps.sh,
// JSON Lines files, and running node.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "r1dist/tokenizer.h"
#include "test_util.h"

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

inline std::string js_dir() { return std::string(R1DIST_SOURCE_DIR) + "/tools/js"; }

// Runs `node tools/js/<script> args`; fails the test (with node's stderr) on a non-zero exit.
inline void run_node(const std::string& script_and_args, const TempDir& tmp) {
  const std::string cmd = "node " + js_dir() + "/" + script_and_args + " 2>" + (tmp / "node.err");
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << cmd << "\n" << read_text(tmp / "node.err")
      << "\nHINT: node and tools/js/node_modules are installed by bash tools/install-deps.sh";
}

// The parity corpus, generated the same way for the tests, the benchmark and the HF script.
inline std::string make_corpus(const TempDir& tmp) {
  const std::string out = tmp / "corpus.jsonl";
  run_node("make_corpus.mjs " + std::string(R1DIST_SOURCE_DIR) + "/../shared/data/medical_o1_sample_en.json " +
               fixture("tokenizer/cases.jsonl") + " " + r1_tokenizer_dir() + " " + out,
           tmp);
  return out;
}

inline std::string ids_str(const std::vector<int32_t>& ids) { return nlohmann::json(ids).dump(); }

}  // namespace r1dist::test
