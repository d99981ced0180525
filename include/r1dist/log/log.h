// Logging facade: rank-aware levels and a per-run log file. Implemented over spdlog
// in its own target (src/log/log.cpp) so that no file that sees torch's headers ever
// includes spdlog/fmt. Callers format with streams: log::info("step ", k, " loss ", x).
#pragma once
#include <sstream>
#include <string>

namespace r1dist::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// Called once after the process group exists. By default only rank 0 prints to the
// terminal; all_ranks = true prints everyone's lines with a [rank r] prefix.
void set_rank(int rank, int world_size, bool all_ranks);
void set_level(Level level);
// Adds a log file (every rank that logs writes its own: run.log, run.rank1.log, ...),
// appended to: a resumed or requeued run keeps the earlier attempts' lines.
void add_file(const std::string& path);
void flush();

void write(Level level, const std::string& msg);
// A progress line from rank 0: rewritten in place on a terminal, a plain info line when
// stderr is not a terminal; always a line in the log file. progress_done() ends it.
void progress(const std::string& msg);
void progress_done();

template <class... A>
std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

template <class... A> void debug(const A&... a) { write(Level::debug, cat(a...)); }
template <class... A> void info(const A&... a) { write(Level::info, cat(a...)); }
template <class... A> void warn(const A&... a) { write(Level::warn, cat(a...)); }
template <class... A> void error(const A&... a) { write(Level::error, cat(a...)); }

}  // namespace r1dist::log
