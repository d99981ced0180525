// The training-data loader (data/loader.h) for every row format, then the rendering of each
// row through the chat template and the built-in prompt template (no tokenizer). The first
// input byte chooses: bit 0 data.on_bad_row (skip when set), bits 1-3 data.format (that
// value mod 7, in the order of DataFormat: auto, medical_o1, messages, sharegpt, alpaca,
// prompt_completion, text); the rest is the file (a JSON array or JSON Lines, as its first byte says).
#include <vector>

#include "fuzz_input.h"
#include "r1dist/config/config.h"
#include "r1dist/data/loader.h"
#include "r1dist/data/prompt_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  r1dist::DataConfig cfg;
  cfg.path = r1dist::fuzz::write_input("rows.jsonl", data + 1, size - 1);
  cfg.threads = 1;
  cfg.on_bad_row = (data[0] & 1) ? r1dist::BadRowPolicy::skip : r1dist::BadRowPolicy::error;
  cfg.format = r1dist::DataFormat(((data[0] >> 1) & 7) % 7);
  return r1dist::fuzz::refuse_cleanly([&] {
    r1dist::LoadReport report;
    const auto rows = r1dist::load_rows(cfg, &report);
    const auto prompt = r1dist::PromptTemplate::configured("");
    std::vector<r1dist::Segment> segments;
    for (const auto& row : rows) {
      (void)r1dist::render_chat(row.turns);
      (void)prompt.render_segments(row, segments);
    }
  });
}
