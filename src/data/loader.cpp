// Reading rows of every data.format: one JSON array (the HF files) or JSON Lines, each row
// turned into a conversation (Row::turns) by its format's reader. The array is split
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
  // mcq_only: rows are read for their multiple-choice item alone (any row format; rows without
  // one are passed over).
  RowParser(const DataConfig& cfg, const std::string& path, LoadReport& report, bool mcq_only = false)
      : cfg_(cfg),
        path_(path),
        report_(report),
        skip_(mcq_only || cfg.on_bad_row == BadRowPolicy::skip),
        mcq_only_(mcq_only),
        format_(cfg.format) {}

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
                      "'\nHINT: a data file is a JSON array of rows or one JSON object per line (JSON Lines)");
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
    lines_ = true;
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
      const bool cut = lines_ && e.byte >= text.size();  // the line ended inside a value
      throw DataError(where_at(line + newlines(text.substr(0, upto))) + ": invalid JSON: " + parse_error_text(e) +
                      (cut ? "\nHINT: the file does not start with '[', so it is read as JSON Lines: one whole row per "
                             "line; a row spread over several lines (pretty-printed JSON) is not JSON Lines"
                           : ""));
    } catch (const json::exception& e) {
      // Valid syntax the parser still refuses: a number that overflows a double (found by
      // fuzz/fuzz_data_rows). Named like a syntax error, by its row.
      std::string w = e.what();
      const auto bracket = w.find("] ");
      throw DataError(where_at(line) + ": invalid JSON: " + (bracket == std::string::npos ? w : w.substr(bracket + 2)));
    }
    Row r;
    r.index = row;
    r.where = where_at(line);
    if (mcq_only_) {
      if (!j.is_object()) return;
      std::vector<std::string> problems;
      mcq(JsonView(j, "row").collecting(&problems), r);
      if (r.mcq) rows.push_back(std::move(r));
      return;
    }
    if (format_ == DataFormat::automatic && j.is_object()) {
      const std::string undetected = detect(j, r.where);
      if (!undetected.empty()) return bad(r.where, undetected);
    }
    const std::string why = extract(j, r);
    if (!why.empty()) return bad(r.where, why);
    rows.push_back(std::move(r));
  }

  // data.format = "auto": the format of the first row whose keys tell it; "" or why not.
  std::string detect(const json& j, const std::string& where) {
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    std::string listed;
    for (size_t i = 0; i < keys.size() && i < 8; ++i) listed += (i ? ", " : "") + keys[i];
    const DataFormat f = detect_format(keys, cfg_.fields);
    if (f == DataFormat::automatic)
      return "data.format = \"auto\" cannot tell the row format from this row's keys (" +
             (listed.empty() ? std::string("none") : listed) +
             ")\nHINT: set data.format (medical_o1, messages, sharegpt, alpaca, prompt_completion, text) and the "
             "column names data.fields.* (docs/DATA.md)";
    format_ = f;
    log::info("data: data.format = \"auto\": ", to_string(format_), " rows (from the keys of ", where, ": ", listed,
              ")");
    return "";
  }

 public:
  DataFormat format() const { return format_; }

 private:

  // Why the row is bad ("" when it is not); every value read through JsonView (base/json.h).
  std::string extract(const json& doc, Row& r) const {
    if (!doc.is_object()) return "the row is " + json_found(doc) + ", not a JSON object";
    std::vector<std::string> problems;
    const JsonView j = JsonView(doc, "row").collecting(&problems);
    std::string why;
    switch (format_) {
      case DataFormat::automatic:  // detect() ran on the first object row
      case DataFormat::medical_o1: why = medical_o1(j, problems, r); break;
      case DataFormat::messages: why = conversation(j, problems, r, false); break;
      case DataFormat::sharegpt: why = conversation(j, problems, r, true); break;
      case DataFormat::alpaca: why = alpaca(j, problems, r); break;
      case DataFormat::prompt_completion: why = prompt_completion(j, problems, r); break;
      case DataFormat::text: why = text(j, problems, r); break;
    }
    if (!why.empty()) return why;
    size_t total = 0;
    for (const Turn& t : r.turns) total += t.content.size() + t.reasoning.size();
    if (total > kMaxRowBytes) return "row too long: " + std::to_string(total) + " bytes of text > 1 MiB limit";
    mcq(j, r);
    return "";
  }

  // The row's multiple-choice item, if it carries one. A malformed one leaves the row without
  // an item (counted and named in the report), never out of training.
  void mcq(const JsonView& row, Row& r) const {
    std::vector<std::string> problems;
    const JsonView j = row.collecting(&problems);
    const std::string why = extract_mcq(j, problems, cfg_.fields.question, r);
    if (why.empty()) return;
    r.mcq.reset();
    ++report_.mcq_unusable;
    if (report_.mcq_reasons.size() < 3) report_.mcq_reasons.push_back(r.where + ": " + why);
  }

  static bool blank(const std::string& s) { return std::all_of(s.begin(), s.end(), is_ws); }

  // A required non-empty string column.
  static std::string column(const JsonView& j, std::vector<std::string>& problems, const std::string& name,
                            std::string& out) {
    out = j[name].string();
    if (!problems.empty()) return problems.front();
    if (blank(out)) return "field \"" + name + "\" is an empty string";
    return "";
  }

  // An optional string column: absent or null = "".
  static std::string optional_column(const JsonView& j, std::vector<std::string>& problems, const std::string& name,
                                     std::string& out) {
    out = j[name].string_or("");
    return problems.empty() ? "" : problems.front();
  }

  // The user turn, then the assistant turn (answer + reasoning), of a single-turn format.
  static void single_turn(Row& r, std::string user, std::string answer, std::string reasoning) {
    r.turns.push_back({Turn::Role::user, std::move(user), ""});
    r.turns.push_back({Turn::Role::assistant, std::move(answer), std::move(reasoning)});
  }

  std::string medical_o1(const JsonView& j, std::vector<std::string>& problems, Row& r) const {
    const auto& f = cfg_.fields;
    std::string q, c, a, why;
    if (!(why = column(j, problems, f.question, q)).empty()) return why;
    if (!(why = column(j, problems, f.cot, c)).empty()) return why;
    if (!(why = column(j, problems, f.response, a)).empty()) return why;
    single_turn(r, std::move(q), std::move(a), std::move(c));
    return "";
  }

  std::string alpaca(const JsonView& j, std::vector<std::string>& problems, Row& r) const {
    const auto& f = cfg_.fields;
    std::string instruction, input, output, reasoning, why;
    if (!(why = column(j, problems, f.instruction, instruction)).empty()) return why;
    if (!(why = optional_column(j, problems, f.input, input)).empty()) return why;
    if (!(why = column(j, problems, f.output, output)).empty()) return why;
    if (!(why = optional_column(j, problems, f.reasoning, reasoning)).empty()) return why;
    if (!blank(input)) instruction += "\n\n" + input;
    single_turn(r, std::move(instruction), std::move(output), std::move(reasoning));
    return "";
  }

  std::string prompt_completion(const JsonView& j, std::vector<std::string>& problems, Row& r) const {
    const auto& f = cfg_.fields;
    std::string prompt, completion, reasoning, why;
    if (!(why = column(j, problems, f.prompt, prompt)).empty()) return why;
    if (!(why = column(j, problems, f.completion, completion)).empty()) return why;
    if (!(why = optional_column(j, problems, f.reasoning, reasoning)).empty()) return why;
    single_turn(r, std::move(prompt), std::move(completion), std::move(reasoning));
    return "";
  }

  std::string text(const JsonView& j, std::vector<std::string>& problems, Row& r) const {
    std::string t, why;
    if (!(why = column(j, problems, cfg_.fields.text, t)).empty()) return why;
    r.turns.push_back({Turn::Role::text, std::move(t), ""});
    return "";
  }

  // messages: [{"role": "system"|"user"|"assistant", "content": ...}];
  // sharegpt: [{"from": "system"|"human"|"gpt", "value": ...}] ("user", "assistant" also read).
  std::string conversation(const JsonView& j, std::vector<std::string>& problems, Row& r, bool sharegpt) const {
    const std::string& list = sharegpt ? cfg_.fields.conversations : cfg_.fields.messages;
    const JsonView turns = j[list];
    if (!turns.present()) return "field \"" + list + "\" is missing";
    if (!turns.is_array()) return "field \"" + list + "\" is " + json_found(turns.json()) + ", not a list of turns";
    if (turns.size() == 0) return "field \"" + list + "\" is an empty conversation";
    const char* role_key = sharegpt ? "from" : "role";
    const char* content_key = sharegpt ? "value" : "content";
    bool has_assistant = false;
    size_t k = 0;
    for (const JsonView& t : turns.elements()) {
      const std::string at = list + "[" + std::to_string(k++) + "]";
      if (!t.is_object()) return at + " is " + json_found(t.json()) + ", not an object";
      const std::string role = t[role_key].string();
      if (!problems.empty()) return problems.front();
      Turn turn;
      if (role == "system") turn.role = Turn::Role::system;
      else if (role == (sharegpt ? "human" : "user") || role == "user") turn.role = Turn::Role::user;
      else if (role == (sharegpt ? "gpt" : "assistant") || role == "assistant") turn.role = Turn::Role::assistant;
      else
        return at + ": unknown " + role_key + " \"" + role + "\" (known: system, " +
               (sharegpt ? "human, gpt" : "user, assistant") + ")";
      turn.content = t[content_key].string();
      if (!problems.empty()) return problems.front();
      if (turn.role == Turn::Role::assistant) {
        turn.reasoning = t[cfg_.fields.reasoning].string_or("");
        if (!problems.empty()) return problems.front();
        if (blank(turn.content) && blank(turn.reasoning)) return at + ": an empty assistant turn";
        has_assistant = true;
      } else if (turn.role == Turn::Role::user && blank(turn.content)) {
        return at + ": an empty user turn";
      }
      r.turns.push_back(std::move(turn));
    }
    if (!has_assistant) return "field \"" + list + "\" has no assistant turn: nothing to train on";
    return "";
  }

  // "options" + "answer_idx" -> r.mcq; "" when the row has neither, else why they make no item.
  // options: an object letter -> text (ordered by letter), or an array of texts lettered A, B,
  // ...; answer_idx: a letter, or a number (an object's key written as a number, or an array's
  // 0-based index). The stem: the row's "question" field, else the data.fields.question column,
  // else the row's question turn.
  static std::string extract_mcq(const JsonView& j, std::vector<std::string>& problems,
                                 const std::string& question_field, Row& r) {
    const auto opts = j["options"], ans = j["answer_idx"];
    if (!opts.present() && !ans.present()) return "";
    if (!opts.present() || !ans.present())
      return std::string("field \"") + (opts.present() ? "answer_idx" : "options") +
             "\" is missing (a multiple-choice item needs both options and answer_idx)";
    MultipleChoice m;
    if (opts.is_array()) {
      const auto texts = opts.elements();
      if (texts.size() > 26) return "field \"options\" has " + std::to_string(texts.size()) + " items (at most 26)";
      for (size_t i = 0; i < texts.size(); ++i) m.options.emplace_back(std::string(1, char('A' + i)), texts[i].string());
    } else {
      for (const auto& [letter, text] : opts.items()) m.options.emplace_back(letter, text.string());  // by key
    }
    if (!problems.empty()) return problems.front();
    if (m.options.empty()) return "field \"options\" must be a non-empty object letter -> text, or array of texts";
    for (const auto& [letter, text] : m.options)
      if (text.empty()) return "option \"" + letter + "\" must be a non-empty string";
    std::string answer;
    if (ans.is_integer() && opts.is_array()) {
      const int64_t i = ans.integer();
      if (i < 0 || i >= int64_t(m.options.size()))
        return "answer_idx " + std::to_string(i) + " is not an index of the " + std::to_string(m.options.size()) +
               " options (0-based)";
      answer = m.options[size_t(i)].first;
    } else {
      answer = ans.is_integer() ? std::to_string(ans.integer()) : ans.string();
      if (!problems.empty()) return problems.front();
    }
    const auto it = std::find_if(m.options.begin(), m.options.end(), [&](const auto& o) { return o.first == answer; });
    if (it == m.options.end()) return "answer_idx \"" + answer + "\" is not one of the option letters";
    m.answer = size_t(it - m.options.begin());
    for (const std::string& field : {std::string("question"), question_field}) {
      if (m.stem.empty() && j[field].is_string()) m.stem = j[field].string();
    }
    if (m.stem.empty()) m.stem = r.question();
    if (m.stem.empty()) return "no question: neither \"question\" nor \"" + question_field + "\" is a non-empty string";
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
  bool skip_, mcq_only_, lines_ = false;
  DataFormat format_;
};

}  // namespace

// A UTF-16 file (a byte-order mark) is refused as a whole: every row would be bad.
void refuse_utf16(const std::string& path, std::string_view bytes) {
  if (bytes.size() >= 2 && ((bytes[0] == '\xFF' && bytes[1] == '\xFE') || (bytes[0] == '\xFE' && bytes[1] == '\xFF')))
    throw DataError(path + ":1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); rows must be UTF-8" +
                    "\nHINT: convert it, e.g. iconv -f UTF-16 -t UTF-8 IN > OUT");
}

bool is_json_array(std::string_view bytes) {
  size_t i = bytes.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
  while (i < bytes.size() && is_ws(bytes[i])) ++i;
  return i < bytes.size() && bytes[i] == '[';
}

std::vector<Row> parse_rows(const DataConfig& cfg, const std::string& path, std::string_view bytes,
                            LoadReport* report) {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  refuse_utf16(path, bytes);
  RowParser p(cfg, path, rep);
  if (is_json_array(bytes)) p.parse_array(bytes);
  else p.parse_lines(bytes);
  rep.format = p.format();
  if (p.rows.empty())
    throw DataError(path + ": no usable rows: all " + std::to_string(rep.rows_in_file) + " rows are bad; the first: " +
                    rep.skip_reasons.front());
  return std::move(p.rows);
}

void log_skipped(const LoadReport& rep, const std::string& path) {
  auto first = [](const std::vector<std::string>& reasons) {
    std::string out;
    for (size_t i = 0; i < reasons.size() && i < 3; ++i) out += "\n  " + reasons[i];
    return out;
  };
  if (rep.skipped > 0)
    log::warn("data: skipped ", rep.skipped, " bad rows of ", rep.rows_in_file, " in ", path,
              " (data.on_bad_row = \"skip\"); the first:", first(rep.skip_reasons));
  if (rep.mcq_unusable > 0)
    log::warn("data: ", rep.mcq_unusable, " rows of ", path,
              " carry options/answer_idx that make no multiple-choice item (the rows themselves are kept); the first:",
              first(rep.mcq_reasons));
}

}  // namespace data

const char* to_string(Turn::Role r) {
  switch (r) {
    case Turn::Role::system: return "system";
    case Turn::Role::user: return "user";
    case Turn::Role::assistant: return "assistant";
    case Turn::Role::text: return "text";
  }
  return "?";
}

namespace {
const std::string kEmpty;
// The user and assistant turns of a single-turn row, or nulls.
std::pair<const Turn*, const Turn*> single_turn(const Row& r) {
  if (r.turns.size() == 2 && r.turns[0].role == Turn::Role::user && r.turns[1].role == Turn::Role::assistant)
    return {&r.turns[0], &r.turns[1]};
  return {nullptr, nullptr};
}
}  // namespace

const std::string& Row::question() const {
  const auto t = single_turn(*this);
  return t.first ? t.first->content : kEmpty;
}
const std::string& Row::cot() const {
  const auto t = single_turn(*this);
  return t.second ? t.second->reasoning : kEmpty;
}
const std::string& Row::response() const {
  const auto t = single_turn(*this);
  return t.second ? t.second->content : kEmpty;
}

DataFormat detect_format(const std::vector<std::string>& keys, const DataFields& f) {
  auto has = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
  if (has(f.question) || has(f.cot) || has(f.response)) return DataFormat::medical_o1;
  if (has(f.messages)) return DataFormat::messages;
  if (has(f.conversations)) return DataFormat::sharegpt;
  if (has(f.instruction) || has(f.output)) return DataFormat::alpaca;
  if (has(f.prompt) || has(f.completion)) return DataFormat::prompt_completion;
  if (has(f.text)) return DataFormat::text;
  return DataFormat::automatic;
}

std::vector<MultipleChoice> load_mcq_items(const std::string& path, const DataFields& fields) {
  DataConfig cfg;
  cfg.path = path;
  cfg.fields = fields;
  LoadReport rep;
  data::RowParser p(cfg, path, rep, /*mcq_only=*/true);
  const std::string bytes = data::read_file(path);
  data::refuse_utf16(path, bytes);
  if (data::is_json_array(bytes)) p.parse_array(bytes);
  else p.parse_lines(bytes);
  data::log_skipped(rep, path);
  if (p.rows.empty())
    throw DataError(path + ": no multiple-choice items in " + std::to_string(rep.rows_in_file) +
                    " rows (rows with \"options\" and \"answer_idx\"" +
                    (rep.mcq_reasons.empty() ? std::string(")") : "; the first unusable: " + rep.mcq_reasons.front() + ")") +
                    "\nHINT: eval.mcq_path names a file of multiple-choice rows (docs/EVAL.md)");
  std::vector<MultipleChoice> out;
  for (Row& r : p.rows) out.push_back(std::move(*r.mcq));
  return out;
}

std::vector<Row> load_rows(const DataConfig& cfg, LoadReport* report) {
  if (cfg.path.empty()) throw UsageError("data.path is empty\nHINT: set data.path to a JSON or JSONL file of rows");
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  auto rows = data::parse_rows(cfg, cfg.path, data::read_file(cfg.path), &rep);
  data::log_skipped(rep, cfg.path);
  return rows;
}

}  // namespace r1dist
