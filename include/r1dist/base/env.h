// The environment switches of benchmarks and diagnostics (R1DIST_FUSED=0, R1DIST_GEMV=0, ...).
#pragma once
#include <cstdlib>
#include <cstring>

namespace r1dist {

// Whether the environment variable `name` is set to exactly `value`.
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

}  // namespace r1dist
