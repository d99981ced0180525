// Reading medical-o1 rows: one JSON array (the HF files) or JSON Lines. The array is split
// into rows by a string-aware bracket scan and each row is parsed on its own, so every
// message can name the row and its line, and a bad row can be skipped without losing the
// rest of the file.
#include "r1dist/data/loader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "data/data_internal.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/base/hash.h"
#include "r1dist/log/log.h"
#include "tokenizer/utf8.h"

namespace r1dist {
namespace data {

std::string read_file(const std::string& path) {
  std::string bytes, why;
  if (!try_read_file(path, &bytes, &why))
    throw DataError(path + ": cannot read the data file (" + why +
                    ")\nHINT: data.path names a JSON or JSONL file (relative paths start at the working directory)");
  return bytes;
}

uint64_t derive_seed(uint64_t seed, std::string_view purpose, uint64_t a, uint64_t b) {
  SplitMix64 r(seed ^ stable_hash64(purpose));
  SplitMix64 ra(r.next() + a * 0xD1B54A32D192ED03ull);
  SplitMix64 rb(ra.next() + b * 0xABC98388FB8FAC03ull);
  return rb.next();
}

namespace {

using nlohmann::json;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int64_t newlines(std::string_view s) { return std::count(s.begin(), s.end(), '\n'); }

// "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." ->
// "syntax error ...": the position inside a row slice would mislead; we name our own.
std::string parse_error_text(const json::parse_error& e) {
  std::string w = e.what();
  const auto col = w.find("column ");
  if (col != std::string::npos) {
    const auto colon = w.find(": ", col);
    if (colon != std::string::npos) return w.substr(colon + 2);
  }
  const auto bracket = w.find("] ");
  return bracket == std::string::npos ? w : w.substr(bracket + 2);
}

class RowParser {
 public:
  RowParser(const DataConfig& cfg, const std::string& path, LoadReport& report)
      : cfg_(cfg), path_(path), report_(report), skip_(cfg.on_bad_row == BadRowPolicy::skip) {}

  std::vector<Row> rows;

  void parse_array(std::string_view s) {
    size_t i = 0;
    int64_t line = 1;
    auto skip_ws = [&] {
      for (; i < s.size() && is_ws(s[i]); ++i)
        if (s[i] == '\n') ++line;
    };
    if (s.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
    skip_ws();
    if (i == s.size()) throw DataError(path_ + ":1: empty file: no rows");
    if (s[i] != '[')
      throw DataError(path_ + ":" + std::to_string(line) + ": expected a JSON array of rows ('['), got '" +
                      std::string(1, s[i]) +
                      "'\nHINT: for one JSON object per line, name the file .jsonl or set data.format = \"jsonl\"");
    ++i;
    skip_ws();
    if (i < s.size() && s[i] == ']') throw DataError(path_ + ":" + std::to_string(line) + ": no rows (an empty array)");
    for (int64_t row = 0;; ++row) {
      skip_ws();
      const size_t start = i;
      const int64_t start_line = line;
      if (i == s.size())
        throw DataError(path_ + ":" + std::to_string(line) + ": truncated file: end of file where row " +
                        std::to_string(row) + " or the closing ']' should be");
      int depth = 0;
      bool in_string = false, escaped = false;
      for (; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '\n') ++line;
        if (in_string) {
          if (escaped) escaped = false;
          else if (c == '\\') escaped = true;
          else if (c == '"') in_string = false;
        } else if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          ++depth;
        } else if (c == '}' || c == ']') {
          if (depth == 0) break;
          --depth;
        } else if (c == ',' && depth == 0) {
          break;
        }
      }
      if (i == s.size() && depth == 0 && !in_string)
        throw DataError(path_ + ":" + std::to_string(line) + ": truncated file: end of file after row " +
                        std::to_string(row) + " (no ']' closes the array)");
      if (i == s.size())
        throw DataError(where(row, start_line) + ": truncated file: end of file inside this row" +
                        (in_string ? " (inside a string)" : "") + ", at line " + std::to_string(line));
      size_t end = i;
      while (end > start && is_ws(s[end - 1])) --end;
      if (end == start)
        throw DataError(where(row, line) + ": invalid JSON: expected a row before '" + std::string(1, s[i]) + "'");
      add_row(s.substr(start, end - start), row, start_line, [&](int64_t l) { return where(row, l); });
      if (s[i++] == ']') break;
    }
    skip_ws();
    if (i != s.size())
      throw DataError(path_ + ":" + std::to_string(line) + ": invalid JSON: text after the closing ']' of the array");
  }

  void parse_lines(std::string_view s) {
    int64_t line = 0, row = 0;
    for (size_t i = 0; i < s.size();) {
      size_t nl = s.find('\n', i);
      if (nl == std::string_view::npos) nl = s.size();
      std::string_view text = s.substr(i, nl - i);
      i = nl + 1;
      ++line;
      if (line == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
      while (!text.empty() && is_ws(text.back())) text.remove_suffix(1);
      while (!text.empty() && is_ws(text.front())) text.remove_prefix(1);
      if (text.empty()) continue;
      const int64_t at = line;
      add_row(text, row++, line, [&](int64_t) { return path_ + ":" + std::to_string(at); });
    }
    if (row == 0) throw DataError(path_ + ":1: empty file: no rows");
  }

 private:
  std::string where(int64_t row, int64_t line) const {
    return path_ + ": row " + std::to_string(row) + " (line " + std::to_string(line) + ")";
  }

  template <class Where>
  void add_row(std::string_view text, int64_t row, int64_t line, Where where_at) {
    ++report_.rows_in_file;
    const size_t valid = tok::utf8_valid_prefix(text);
    if (valid != text.size()) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[valid]));
      return bad(where_at(line + newlines(text.substr(0, valid))),
                 std::string("invalid UTF-8 (byte ") + hex + " at byte " + std::to_string(valid) + " of the row)");
    }
    json j;
    try {
      j = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
      const size_t upto = std::min<size_t>(e.byte, text.size());
      throw DataError(where_at(line + newlines(text.substr(0, upto))) + ": invalid JSON: " + parse_error_text(e));
    } catch (const json::exception& e) {
      // Valid syntax the parser still refuses: a number that overflows a double (found by
      // fuzz/fuzz_data_rows). Named like a syntax error, by its row.
      std::string w = e.what();
      const auto bracket = w.find("] ");
      throw DataError(where_at(line) + ": invalid JSON: " + (bracket == std::string::npos ? w : w.substr(bracket + 2)));
    }
    Row r;
    r.index = row;
    const std::string why = extract(j, r);
    if (!why.empty()) return bad(where_at(line), why);
    rows.push_back(std::move(r));
  }

  // Why the row is bad ("" when it is not); every value read through JsonView (base/json.h).
  std::string extract(const json& doc, Row& r) const {
    if (!doc.is_object()) return "the row is " + json_found(doc) + ", not a JSON object";
    std::vector<std::string> problems;
    const JsonView j = JsonView(doc, "row").collecting(&problems);
    auto field = [&](const std::string& name, std::string& out) -> std::string {
      out = j[name].string();
      if (!problems.empty()) return problems.front();
      if (std::all_of(out.begin(), out.end(), is_ws)) return "field \"" + name + "\" is an empty string";
      return "";
    };
    const auto& f = cfg_.fields;
    using Field = std::pair<const std::string*, std::string*>;
    for (const Field& fo : {Field{&f.question, &r.question}, Field{&f.cot, &r.cot}, Field{&f.response, &r.response}}) {
      std::string why = field(*fo.first, *fo.second);
      if (!why.empty()) return why;
    }
    const size_t total = r.question.size() + r.cot.size() + r.response.size();
    if (total > kMaxRowBytes)
      return "row too long: " + std::to_string(total) + " bytes of text > 1 MiB limit";
    return extract_mcq(j, problems, r);
  }

  // "options" + "answer_idx" -> r.mcq; a row with neither has no MCQ item.
  static std::string extract_mcq(const JsonView& j, std::vector<std::string>& problems, Row& r) {
    const auto opts = j["options"], ans = j["answer_idx"];
    if (!opts.present() && !ans.present()) return "";
    if (!opts.present() || !ans.present())
      return std::string("field \"") + (opts.present() ? "answer_idx" : "options") +
             "\" is missing (a multiple-choice row needs both options and answer_idx)";
    const std::string answer = ans.string();
    const auto options = opts.items();  // nlohmann orders object keys
    if (!problems.empty()) return problems.front();
    if (options.empty()) return "field \"options\" must be a non-empty object letter -> text";
    MultipleChoice m;
    for (const auto& [letter, text] : options) {
      const std::string t = text.string();
      if (!problems.empty()) return problems.front();
      if (t.empty()) return "option \"" + letter + "\" must be a non-empty string";
      if (letter == answer) m.answer = m.options.size();
      m.options.emplace_back(letter, t);
    }
    if (!opts[answer].present()) return "answer_idx \"" + answer + "\" is not one of the option letters";
    const std::string stem = j["question"].is_string() ? j["question"].string() : "";
    m.stem = !stem.empty() ? stem : r.question;
    r.mcq = std::move(m);
    return "";
  }

  void bad(const std::string& where, const std::string& why) {
    if (!skip_)
      throw DataError(where + ": " + why + "\nHINT: fix the row, or set data.on_bad_row = \"skip\" to skip and count bad rows");
    ++report_.skipped;
    report_.skip_reasons.push_back(where + ": " + why);
  }

  const DataConfig& cfg_;
  const std::string& path_;
  LoadReport& report_;
  bool skip_;
};

}  // namespace

bool is_jsonl(const DataConfig& cfg) {
  if (cfg.format == DataFormat::jsonl) return true;
  if (cfg.format == DataFormat::json) return false;
  const std::string& p = cfg.path;
  auto ends = [&](const std::string& ext) {
    return p.size() >= ext.size() && p.compare(p.size() - ext.size(), ext.size(), ext) == 0;
  };
  return ends(".jsonl") || ends(".ndjson");
}

std::vector<Row> parse_rows(const DataConfig& cfg, const std::string& path, std::string_view bytes,
                            LoadReport* report) {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  RowParser p(cfg, path, rep);
  if (is_jsonl(cfg)) p.parse_lines(bytes);
  else p.parse_array(bytes);
  if (p.rows.empty())
    throw DataError(path + ": no usable rows: all " + std::to_string(rep.rows_in_file) + " rows are bad; the first: " +
                    rep.skip_reasons.front());
  return std::move(p.rows);
}

void log_skipped(const LoadReport& rep, const std::string& path) {
  if (rep.skipped == 0) return;
  std::string first;
  for (size_t i = 0; i < rep.skip_reasons.size() && i < 3; ++i) first += "\n  " + rep.skip_reasons[i];
  log::warn("data: skipped ", rep.skipped, " bad rows of ", rep.rows_in_file, " in ", path,
            " (data.on_bad_row = \"skip\"); the first:", first);
}

}  // namespace data

std::vector<Row> load_rows(const DataConfig& cfg, LoadReport* report) {
  if (cfg.path.empty()) throw UsageError("data.path is empty\nHINT: set data.path to a JSON or JSONL file of rows");
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  auto rows = data::parse_rows(cfg, cfg.path, data::read_file(cfg.path), &rep);
  data::log_skipped(rep, cfg.path);
  return rows;
}

}  // namespace r1dist
