// An exception's message as a user reads it: libtorch's errors (c10::Error: a failed
// allocation, a CUDA out-of-memory) carry the C++ stack of the throw in what(); the message
// alone is what the log and the JSON result show.
#pragma once
#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace r1dist {

inline std::string error_text(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

}  // namespace r1dist
