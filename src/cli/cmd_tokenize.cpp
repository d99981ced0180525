// r1dist tokenize: text to ids and back with a model's tokenizer.json.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

using nlohmann::json;

std::string read_all(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::string text, why;
  if (!try_read_file(path, &text, &why)) throw UsageError("tokenize: cannot open " + path + ": " + why);
  return text;
}

// "[1, 2, 3]" (JSON) or "1 2 3" / "1,2,3".
std::vector<int32_t> parse_ids(const std::string& s, const std::string& where) {
  std::vector<int32_t> ids;
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && s[first] == '[') {
    const Json j = parse_json(s, "tokenize --decode: " + where);
    for (const auto& v : JsonView(j, "tokenize --decode: " + where).elements()) {
      const int64_t id = v.integer();
      if (id < 0 || id > INT32_MAX) v.fail("is not a token id");
      ids.push_back(int32_t(id));
    }
    return ids;
  }
  std::string t = s;
  for (char& c : t)
    if (c == ',') c = ' ';
  std::istringstream in(t);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size()) throw UsageError("tokenize --decode: " + where + ": '" + tok + "' is not an integer id");
    ids.push_back(int32_t(v));
  }
  return ids;
}

std::string ids_text(const std::vector<int32_t>& ids, bool as_json) {
  if (as_json) return json(ids).dump();
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

int run_jsonl(const Tokenizer& tok, const std::string& path, bool decode, bool add_special, bool skip_special,
              int threads) {
  const std::string all = read_all(path);
  std::vector<std::string> lines;
  std::istringstream in(all);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (decode) {
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto ids = parse_ids(lines[i], path + " line " + std::to_string(i + 1));
      std::cout << json(tok.decode(ids, skip_special)).dump() << "\n";
    }
    return 0;
  }
  std::vector<std::string> texts;
  texts.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = "tokenize --jsonl: " + path + ":" + std::to_string(i + 1);
    const Json j = parse_json(lines[i], where);
    texts.push_back(JsonView(j, where).string());
  }
  const auto out = tok.encode_batch(texts, threads, add_special);
  std::string buf;
  for (const auto& ids : out) {
    buf += json(ids).dump();
    buf += '\n';
  }
  std::cout << buf;
  return 0;
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  Args a("r1dist tokenize",
         "Text to token ids with a model's tokenizer.json, or ids back to text (--decode). No special tokens are "
         "added unless --add-special is given.");
  a.option_str("tokenizer", "model directory with tokenizer.json (or the file itself)")
      .option_str("text", "the input: a text, or with --decode ids ('1 2 3' or '[1,2,3]')")
      .option_str("file", "read the input from a file, bytes as they are ('-': stdin)")
      .option_str("jsonl", "batch mode: one JSON string per line in, one id array per line out (with --decode: id "
                           "arrays in, JSON strings out); '-': stdin")
      .flag("decode", "ids in, text out")
      .flag("json", "print ids as a JSON array (decode: the text as a JSON string)")
      .flag("add-special", "apply the post-processor (R1: prepend <｜begin▁of▁sentence｜>)")
      .flag("skip-special", "decode: leave out special tokens")
      .option_int("threads", "threads for --jsonl (0: all cores)", 0);
  if (!a.parse(argc, argv)) return 0;
  const auto dir = a.required("tokenizer");
  const int sources = int(a.has("text")) + int(a.has("file")) + int(a.has("jsonl"));
  if (sources != 1) throw UsageError("tokenize: give exactly one of --text, --file, --jsonl");
  const bool decode = a.has("decode"), as_json = a.has("json");
  const bool add_special = a.has("add-special"), skip_special = a.has("skip-special");
  const int64_t threads = a.i64("threads");
  if (threads < 0 || threads > 1024) throw UsageError("tokenize: --threads must be in [0, 1024]");

  const auto tok = Tokenizer::load(dir);
  if (a.has("jsonl")) return run_jsonl(tok, a.str("jsonl"), decode, add_special, skip_special, int(threads));
  const std::string input = a.has("text") ? a.str("text") : read_all(a.str("file"));
  if (decode) {
    const auto text = tok.decode(parse_ids(input, a.has("text") ? "--text" : a.str("file")), skip_special);
    if (as_json) std::cout << json(text).dump() << "\n";
    else std::cout << text;
  } else {
    std::cout << ids_text(tok.encode(input, add_special), as_json) << "\n";
  }
  std::cout.flush();
  return 0;
}

}  // namespace r1dist
