// The progress of one long piece of work (loading a model, an evaluation phase, a merge) on
// the progress line of log.h: "eval: drift 3/8 rows, 6s, ETA 10s", at the first unit, then
// at most every 2 seconds, and once more when done ("eval: drift 8/8 rows in 16s"). Rank 0
// prints it, as every progress line.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace r1dist {

// "1h02m03s", "4m05s", "7s"; "?" when unknown.
std::string format_duration(double seconds);

namespace log {

class Meter {
 public:
  Meter(std::string what, int64_t total, std::string unit);
  Meter(const Meter&) = delete;
  Meter& operator=(const Meter&) = delete;
  ~Meter();  // ends the line; only done() says the work is complete
  void advance(int64_t units = 1);
  void done();

 private:
  using Clock = std::chrono::steady_clock;
  double elapsed() const;
  std::string what_, unit_;
  int64_t total_, done_ = 0;
  Clock::time_point start_, shown_;
  bool any_shown_ = false, finished_ = false;
};

}  // namespace log
}  // namespace r1dist
