// The run configuration (config/config.h): TOML syntax, unknown keys, types, ranges and the
// cross-key rules; a config that parses must print as TOML that parses back equal.
#include <string>

#include "fuzz_input.h"
#include "r1dist/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return r1dist::fuzz::refuse_cleanly([&] {
    const auto cfg = r1dist::parse_config_string(text, "fuzz.toml");
    const auto again = r1dist::parse_config_string(cfg.to_toml(), "fuzz.toml (printed back)");
    if (again != cfg) std::abort();  // the printed config must mean the same
  });
}
