// Error types shared by every module. UsageError (bad flags, bad config) maps to exit
// code 2; Error (a runtime failure) to exit code 1. Messages name the stage that failed
// and, where a user can act, end with a "HINT: ..." line.
#pragma once
#include <stdexcept>
#include <string>

namespace r1dist {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct UsageError : Error {
  using Error::Error;
};

// Throws Error(msg) when cond is false.
inline void check(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace r1dist
