// Rows of a data file in one of the row formats of data.format (docs/DATA.md): medical_o1
// (Question, Complex_CoT, Response), messages, sharegpt, alpaca, prompt_completion, text; the
// column names are data.fields.*. The file is a JSON array of rows or JSON Lines.
// The data pipeline is: load_rows (here) -> select_rows (select.h) -> PromptTemplate
// (prompt_template.h) -> build_dataset (dataset.h) -> BatchPlan + collate (batch_plan.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "r1dist/base/error.h"
#include "r1dist/config/config.h"

namespace r1dist {

// Bad input in a data file; the message names the file and the line (JSONL) or row (JSON).
// An input error: exit code 2, as for a bad config.
struct DataError : UsageError {
  using UsageError::UsageError;
};

// A multiple-choice item carried by a row (the real medical-o1 rows do): fields "options" (an
// object letter -> text, or an array of texts lettered A, B, ...) and "answer_idx" (one of its
// letters, or a number: an object's key, an array's 0-based index); the stem is the row's
// "question" field when present (the MCQ form), else the configured question field.
struct MultipleChoice {
  std::string stem;
  std::vector<std::pair<std::string, std::string>> options;  // (letter, text), by letter
  size_t answer = 0;                                         // index into options
};

// One turn of a conversation. `reasoning` is an assistant turn's chain of thought (placed in
// <think> ... </think> by the chat template); it is empty for other roles.
struct Turn {
  enum class Role { system, user, assistant, text };  // text: a plain-text row, loss on all of it
  Role role = Role::user;
  std::string content, reasoning;
};
const char* to_string(Turn::Role r);

// Every row format (data.format) becomes this one shape: a conversation of turns. A
// medical_o1 row is [user: question, assistant: reasoning = cot, content = response]; a text
// row is one turn of role text.
struct Row {
  int64_t index = 0;  // position in the file (0-based), the id recorded in run metadata
  std::string where;  // "FILE:LINE" (JSONL) or "FILE: row N (line L)" (JSON array), for messages
  std::vector<Turn> turns;
  std::optional<MultipleChoice> mcq;  // rows with "options" and "answer_idx"
  // The question, reasoning and answer of a single-turn row (one user turn, then one
  // assistant turn); "" where the row has no such turn.
  const std::string& question() const;
  const std::string& cot() const;
  const std::string& response() const;
};

struct LoadReport {
  int64_t rows_in_file = 0;  // rows parsed, including skipped ones
  int64_t skipped = 0;       // bad rows skipped (data.on_bad_row = "skip")
  // One line per skipped row: "FILE:LINE: why" (JSONL) or "FILE: row N (line L): why"
  // (JSON array; N = Row::index).
  std::vector<std::string> skip_reasons;
  // data.format as used: the configured one, or the one data.format = "auto" detected.
  DataFormat format = DataFormat::automatic;
  // Rows whose options/answer_idx make no multiple-choice item (they stay training rows), and
  // the first few reasons, "FILE:LINE: why".
  int64_t mcq_unusable = 0;
  std::vector<std::string> mcq_reasons;
};

// Reads every row of data.path. The file is a JSON array when its first non-blank byte is
// '[', else JSON Lines. data.format = "auto" detects the row format from the keys of the
// first row that is a JSON object (detect_format) and logs it.
// Bad rows (a missing field, a wrong type, an empty string or conversation, no assistant turn,
// an unknown role, invalid UTF-8, over 1 MiB of text) throw DataError or are skipped and
// counted, per data.on_bad_row; a malformed, truncated or empty file always throws DataError
// with the line.
std::vector<Row> load_rows(const DataConfig& cfg, LoadReport* report = nullptr);

// The multiple-choice items of a file of rows in any format (eval.mcq_path): only "options",
// "answer_idx" and the question ("question", else fields.question) are read (MultipleChoice);
// rows without them are passed over, malformed items counted and logged. Throws DataError for
// a malformed file or one without any item.
std::vector<MultipleChoice> load_mcq_items(const std::string& path, const DataFields& fields);

// The row format a row with these keys is in (data.fields.* name the keys), first match: any of
// the three medical_o1 columns, messages, conversations (sharegpt), instruction or output
// (alpaca), prompt or completion (prompt_completion), text; automatic when none matches.
// data.format = "auto" takes the format of the first row whose keys match one; rows before it
// are bad rows.
DataFormat detect_format(const std::vector<std::string>& keys, const DataFields& f);

}  // namespace r1dist
