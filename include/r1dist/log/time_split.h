// Where the wall time of a whole command went: named parts (seconds each, measured where the
// work happens), "other" (what no part measured) and "total" (since the process started, so
// the program's own start-up is in it), each with its share of the total. `r1dist train`
// prints it as a table at its end and puts the same figures under the same names into its
// --json result and metrics.h5 (/time_split, formats/metrics.h).
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace r1dist {

struct TimePart {
  std::string name;
  double seconds = 0;
  double share = 0;  // of the total, 0..1
};

// Seconds since this process started (Linux: its start time in /proc/self/stat against
// CLOCK_BOOTTIME, 10 ms resolution); where that cannot be read, since the first call.
double process_seconds();

class TimeSplit {
 public:
  using Clock = std::chrono::steady_clock;
  // `parts`: the names in table order ("other" and "total" are added by finish()).
  explicit TimeSplit(std::vector<std::string> parts);
  // Adds seconds to a part named in the constructor (throws std::logic_error otherwise).
  void add(const std::string& part, double seconds);
  // Adds to `part` the time since `t0`; returns Clock::now().
  Clock::time_point add_since(const std::string& part, Clock::time_point t0);
  // Adds the time from the start of the process until now to `part` (the load phase).
  void add_since_process_start(const std::string& part);
  // The parts in order, then "other" (the total minus the parts, never below 0) and "total"
  // (since the process started), with their shares of the total. The parts plus other sum
  // to the total.
  std::vector<TimePart> finish() const;

  // Adds the time of its scope to a part (also when the scope is left by an exception).
  class Scope {
   public:
    Scope(TimeSplit& split, std::string part) : split_(split), part_(std::move(part)), t0_(Clock::now()) {}
    ~Scope() { split_.add_since(part_, t0_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TimeSplit& split_;
    std::string part_;
    Clock::time_point t0_;
  };
  Scope time(const std::string& part) { return Scope(*this, part); }

 private:
  std::vector<TimePart> parts_;
  Clock::time_point process_start_;
};

// The table for the log: one line per part, "name  seconds s  share %", headed by `title`.
std::string format_time_split(const std::vector<TimePart>& parts, const std::string& title);

}  // namespace r1dist
