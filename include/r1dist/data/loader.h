// Rows of a medical-o1 data file (Question, Complex_CoT, Response; the column names are
// data.fields.*), read from a JSON array or JSONL.
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
struct DataError : Error {
  using Error::Error;
};

// A multiple-choice item carried by a row (the real medical-o1 rows do): fields
// "options" (an object letter -> text) and "answer_idx" (one of its letters); the stem is the
// row's "question" field when present (the MCQ form), else the configured question field.
struct MultipleChoice {
  std::string stem;
  std::vector<std::pair<std::string, std::string>> options;  // (letter, text), by letter
  size_t answer = 0;                                         // index into options
};

struct Row {
  int64_t index = 0;  // position in the file (0-based), the id recorded in run metadata
  std::string question, cot, response;
  std::optional<MultipleChoice> mcq;  // rows with "options" and "answer_idx"
};

struct LoadReport {
  int64_t rows_in_file = 0;  // rows parsed, including skipped ones
  int64_t skipped = 0;       // bad rows skipped (data.on_bad_row = "skip")
  // One line per skipped row: "FILE:LINE: why" (JSONL) or "FILE: row N (line L): why"
  // (JSON array; N = Row::index).
  std::vector<std::string> skip_reasons;
};

// Reads every row of data.path (data.format: auto picks by extension, .jsonl = JSONL).
// Bad rows (missing field, not a string, empty string, invalid UTF-8, over 1 MiB of text)
// throw DataError or are skipped and counted, per data.on_bad_row; a malformed, truncated
// or empty file always throws DataError with the line.
std::vector<Row> load_rows(const DataConfig& cfg, LoadReport* report = nullptr);

}  // namespace r1dist
