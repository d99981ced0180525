#include "r1dist/log/meter.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "r1dist/log/log.h"

namespace r1dist {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << "h";
  if (t >= 60) os << std::setw(t >= 3600 ? 2 : 1) << std::setfill('0') << (t / 60) % 60 << "m";
  os << std::setw(t >= 60 ? 2 : 1) << std::setfill('0') << t % 60 << "s";
  return os.str();
}

namespace log {

namespace {
constexpr double kEverySeconds = 2.0;
}

Meter::Meter(std::string what, int64_t total, std::string unit)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), start_(Clock::now()), shown_(start_) {}

Meter::~Meter() {
  if (!finished_ && any_shown_) progress_done();  // left early (an exception): no "done" line
}

double Meter::elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

void Meter::advance(int64_t units) {
  done_ += units;
  const auto now = Clock::now();
  if (any_shown_ && std::chrono::duration<double>(now - shown_).count() < kEverySeconds) return;
  if (done_ >= total_) return;  // done() says it
  const double t = elapsed();
  const double eta = done_ > 0 ? t / double(done_) * double(total_ - done_) : -1;
  progress(cat(what_, " ", done_, "/", total_, " ", unit_, ", ", format_duration(t), ", ETA ",
               format_duration(eta)));
  shown_ = now;
  any_shown_ = true;
}

void Meter::done() {
  if (finished_) return;
  finished_ = true;
  if (total_ <= 0) return;
  progress(cat(what_, " ", done_, "/", total_, " ", unit_, " in ", format_duration(elapsed())));
  progress_done();
}

}  // namespace log
}  // namespace r1dist
