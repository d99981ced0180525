#include "r1dist/train/fault.h"

#include <ATen/ATen.h>

#include <csignal>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include "r1dist/base/error.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/log/log.h"

namespace r1dist {

FaultPlan FaultPlan::from_env() {
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
      else
        throw UsageError("R1DIST_FAULT: unknown fault '" + part + "'");
      first = false;
    } else if (part.rfind("rank=", 0) == 0) {
      f.rank = std::stoi(part.substr(5));
    } else if (part.rfind("step=", 0) == 0) {
      f.step = std::stoll(part.substr(5));
    } else {
      throw UsageError("R1DIST_FAULT: cannot parse '" + part + "'");
    }
  }
  return f;
}

void FaultPlan::before_allreduce(at::Tensor& buffer, int my_rank, int64_t s) const {
  if (kind == nan_loss && rank == my_rank && step == s) buffer.fill_(std::numeric_limits<double>::quiet_NaN());
  if (kind == signal && rank == my_rank && step == s) std::raise(SIGTERM);
}

void FaultPlan::after_step(int my_rank, int64_t s) const {
  if (kind == kill && rank == my_rank && step == s) {
    log::flush();
    std::raise(SIGKILL);
  }
}

void FaultPlan::before_checkpoint(int64_t s) const {
  if (kind == kill_in_checkpoint && step == s) set_checkpoint_write_hook([](const char*) { std::raise(SIGKILL); });
}

}  // namespace r1dist
