// The training-data loader (data/loader.h): JSONL (first input byte even) or one JSON array
// (odd), with the default fields (Question, Complex_CoT, Response, options, answer_idx).
#include "fuzz_input.h"
#include "r1dist/config/config.h"
#include "r1dist/data/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool jsonl = (data[0] & 1) == 0;
  r1dist::DataConfig cfg;
  cfg.path = r1dist::fuzz::write_input(jsonl ? "rows.jsonl" : "rows.json", data + 1, size - 1);
  cfg.threads = 1;
  cfg.on_bad_row = (data[0] & 2) ? r1dist::BadRowPolicy::skip : r1dist::BadRowPolicy::error;
  return r1dist::fuzz::refuse_cleanly([&] {
    r1dist::LoadReport report;
    (void)r1dist::load_rows(cfg, &report);
  });
}
