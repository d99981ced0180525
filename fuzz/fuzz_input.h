// Shared by the libFuzzer targets (docs/RELIABILITY.md): the input as a file, since r1dist's
// readers take paths (they mmap or stream real files), and the rule for what counts as a
// failure. A refusal must be an r1dist::Error (a message naming the file and the field);
// anything else escaping (std::out_of_range, a JSON library exception, bad_alloc), a crash or
// a sanitizer report is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "r1dist/base/error.h"

namespace r1dist::fuzz {

// A per-process scratch directory (TMPDIR or /tmp), made once.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::string d = std::string(t && *t ? t : "/tmp") + "/r1dist-fuzz-" + std::to_string(::getpid());
    std::string cmd = "mkdir -p '" + d + "'";
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d;
  }();
  return dir;
}

// Writes the bytes to scratch_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs `fn`; an r1dist::Error is the expected refusal of bad input, anything else escapes.
template <class Fn>
int refuse_cleanly(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace r1dist::fuzz
