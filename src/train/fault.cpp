#include "r1dist/train/fault.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include "r1dist/base/error.h"
#include "r1dist/dist/stop_signals.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

void stop_here(const std::string& where) {
  log::warn("R1DIST_FAULT: this rank stops itself (SIGSTOP) ", where);
  log::flush();
  std::raise(SIGSTOP);
}

}  // namespace

FaultPlan FaultPlan::from_env(const std::string& output_dir) {
  FaultPlan f;
  const char* env = std::getenv("R1DIST_FAULT");
  if (!env || !*env) return f;
  std::stringstream ss(env);
  std::string part;
  bool first = true;
  while (std::getline(ss, part, ':')) {
    if (first) {
      if (part == "kill")
        f.kind = kill;
      else if (part == "kill_in_checkpoint")
        f.kind = kill_in_checkpoint;
      else if (part == "nan_loss")
        f.kind = nan_loss;
      else if (part == "signal")
        f.kind = signal;
      else if (part == "nan_update")
        f.kind = nan_update;
      else if (part == "stop_at_startup")
        f.kind = stop_at_startup;
      else if (part == "stop_in_step")
        f.kind = stop_in_step;
      else if (part == "stop_in_checkpoint")
        f.kind = stop_in_checkpoint;
      else if (part == "hold")
        f.kind = hold;
      else
        throw UsageError("R1DIST_FAULT: unknown fault '" + part + "'");
      first = false;
    } else if (part.rfind("rank=", 0) == 0) {
      f.rank = std::stoi(part.substr(5));
    } else if (part.rfind("step=", 0) == 0) {
      f.step = std::stoll(part.substr(5));
    } else if (part.rfind("run=", 0) == 0) {
      std::stringstream names(part.substr(4));
      for (std::string n; std::getline(names, n, ',');) f.runs.push_back(n);
    } else {
      throw UsageError("R1DIST_FAULT: cannot parse '" + part + "'");
    }
  }
  if (!f.runs.empty()) {
    const std::string name = std::filesystem::path(output_dir).lexically_normal().filename().string();
    const std::string dir_name = name.empty() ? std::filesystem::path(output_dir).parent_path().filename().string() : name;
    if (std::find(f.runs.begin(), f.runs.end(), dir_name) == f.runs.end()) f.kind = none;
  }
  return f;
}

void FaultPlan::before_allreduce(at::Tensor& buffer, int my_rank, int64_t s) const {
  if (kind == nan_loss && rank == my_rank && step == s) buffer.fill_(std::numeric_limits<double>::quiet_NaN());
  if (kind == signal && rank == my_rank && step == s) std::raise(SIGTERM);
  if (kind == stop_in_step && rank == my_rank && step == s) stop_here("in step " + std::to_string(s));
}

void FaultPlan::after_update(at::Tensor& flat, int my_rank, int64_t s) const {
  if (kind == nan_update && rank == my_rank && step == s) flat.narrow(0, 0, 1).fill_(std::numeric_limits<float>::quiet_NaN());
}

void FaultPlan::at_startup(int my_rank) const {
  if (kind == stop_at_startup && rank == my_rank) stop_here("at start-up");
}

void FaultPlan::after_step(int my_rank, int64_t s) const {
  if (kind == hold && step == s) {
    log::warn("R1DIST_FAULT: holding after step ", s, " until a stop signal arrives (at most 300 s)");
    log::flush();
    for (int i = 0; i < 3000 && stop_signal() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (kind == kill && rank == my_rank && step == s) {
    log::flush();
    std::raise(SIGKILL);
  }
}

void FaultPlan::before_checkpoint(int my_rank, int64_t s) const {
  if (kind == kill_in_checkpoint && step == s && my_rank == 0)
    set_checkpoint_write_hook([](const char*) { std::raise(SIGKILL); });
  if (kind == stop_in_checkpoint && rank == my_rank && step == s) stop_here("before the checkpoint of step " + std::to_string(s));
}

}  // namespace r1dist
