// spdlog behind the facade in include/r1dist/log/log.h. This file must not include torch.
#include "r1dist/log/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>

namespace r1dist::log {
namespace {

struct State {
  std::mutex mu;
  int rank = 0;
  bool all_ranks = false;
  bool prefix_rank = false;
  Level level = Level::info;
  std::shared_ptr<spdlog::logger> term;
  std::shared_ptr<spdlog::logger> file;
  bool progress_open = false;  // a progress line without its newline is on the terminal
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> terminal_logger() {
  State& s = state();
  if (!s.term) {
    // stderr, so that subcommands can print JSON results on stdout.
    s.term = std::make_shared<spdlog::logger>(
        "r1dist", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    s.term->set_pattern("[%H:%M:%S] %^%l%$ %v");
    s.term->set_level(spdlog::level::debug);
  }
  return s.term;
}

}  // namespace

void set_rank(int rank, int world_size, bool all_ranks) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.rank = rank;
  s.all_ranks = all_ranks;
  s.prefix_rank = world_size > 1 && all_ranks;
}

void set_level(Level level) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.level = level;
}

void add_file(const std::string& path) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  std::string p = path;
  if (s.rank != 0) {
    auto dot = p.rfind('.');
    std::string suffix = ".rank" + std::to_string(s.rank);
    p = dot == std::string::npos ? p + suffix : p.substr(0, dot) + suffix + p.substr(dot);
  }
  s.file = std::make_shared<spdlog::logger>(
      "r1dist_file", std::make_shared<spdlog::sinks::basic_file_sink_mt>(p, /*truncate=*/false));
  s.file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %l %v");
  s.file->set_level(spdlog::level::debug);
  s.file->flush_on(spdlog::level::info);
}

void flush() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (s.term) s.term->flush();
  if (s.file) s.file->flush();
}

void write(Level level, const std::string& msg) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (level < s.level) return;
  const std::string line = s.prefix_rank ? "[rank " + std::to_string(s.rank) + "] " + msg : msg;
  if (s.file) s.file->log(to_spd(level), line);
  if (s.progress_open) {
    std::fputc('\n', stderr);
    s.progress_open = false;
  }
  // Errors are shown from every rank: a failure on rank 3 must not vanish.
  if (s.rank == 0 || s.all_ranks || level == Level::error) terminal_logger()->log(to_spd(level), line);
}

void progress(const std::string& msg) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (s.file) s.file->log(spdlog::level::info, msg);
  if (s.rank != 0) return;
  static const bool tty = isatty(fileno(stderr)) != 0;
  if (!tty) {
    terminal_logger()->log(spdlog::level::info, msg);
    return;
  }
  terminal_logger()->flush();
  std::fprintf(stderr, "\r\033[K%s", msg.c_str());
  std::fflush(stderr);
  s.progress_open = true;
}

void progress_done() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (s.progress_open) std::fputc('\n', stderr);
  s.progress_open = false;
}

}  // namespace r1dist::log
