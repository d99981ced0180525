// A model directory's config.json (formats/qwen2_config.h): JSON syntax, types, ranges and
// the shape relations (heads divide hidden, kv heads divide heads, ...).
#include "fuzz_input.h"
#include "r1dist/formats/qwen2_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  r1dist::fuzz::write_input("config.json", data, size);
  return r1dist::fuzz::refuse_cleanly([&] {
    const auto c = r1dist::read_qwen2_config(r1dist::fuzz::scratch_dir());
    (void)r1dist::qwen2_config_json(c);
    (void)r1dist::base_param_count(c);
  });
}
