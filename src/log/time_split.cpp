#include "r1dist/log/time_split.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace r1dist {

namespace {

// The process's start in seconds since boot (field 22 of /proc/self/stat, in clock ticks;
// the command name in field 2 may hold spaces and parentheses, so fields count from the
// last ')'); negative when it cannot be read.
double start_since_boot() {
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!std::getline(f, line)) return -1;
  const auto paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(line.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return -1;
  const long ticks = sysconf(_SC_CLK_TCK);
  try {
    return ticks > 0 ? double(std::stoull(field)) / double(ticks) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

double process_seconds() {
  static const auto first = std::chrono::steady_clock::now();
  static const double start = start_since_boot();
  timespec now{};
  if (start >= 0 && clock_gettime(CLOCK_BOOTTIME, &now) == 0) {
    const double s = double(now.tv_sec) + double(now.tv_nsec) * 1e-9 - start;
    if (s >= 0) return s;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
}

TimeSplit::TimeSplit(std::vector<std::string> parts)
    : process_start_(Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(process_seconds()))) {
  for (auto& p : parts) parts_.push_back({std::move(p), 0, 0});
}

void TimeSplit::add(const std::string& part, double seconds) {
  for (auto& p : parts_)
    if (p.name == part) {
      p.seconds += seconds;
      return;
    }
  throw std::logic_error("TimeSplit: no part named '" + part + "'");
}

TimeSplit::Clock::time_point TimeSplit::add_since(const std::string& part, Clock::time_point t0) {
  const auto now = Clock::now();
  add(part, std::chrono::duration<double>(now - t0).count());
  return now;
}

void TimeSplit::add_since_process_start(const std::string& part) { add_since(part, process_start_); }

std::vector<TimePart> TimeSplit::finish() const {
  std::vector<TimePart> out = parts_;
  double measured = 0;
  for (const auto& p : out) measured += p.seconds;
  // The total is at least the sum of the parts: a part that began before the process clock
  // could place it (10 ms ticks) never makes "other" negative.
  const double total = std::max(measured, std::chrono::duration<double>(Clock::now() - process_start_).count());
  out.push_back({"other", total - measured, 0});
  out.push_back({"total", total, 0});
  for (auto& p : out) p.share = total > 0 ? p.seconds / total : 0;
  return out;
}

std::string format_time_split(const std::vector<TimePart>& parts, const std::string& title) {
  size_t width = 5;
  for (const auto& p : parts) width = std::max(width, p.name.size());
  std::string out = title;
  char line[160];
  for (const auto& p : parts) {
    std::snprintf(line, sizeof line, "\n  %-*s %10.2f s %6.1f%%", int(width), p.name.c_str(), p.seconds,
                  100 * p.share);
    out += line;
  }
  return out;
}

}  // namespace r1dist
