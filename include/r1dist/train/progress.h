// The progress line of a training run: step, loss, lr, grad norm, real (row) tokens/s, slot
// tokens/s and the padding share, the share of the step spent in the all-reduce and an ETA
// from a moving average of step times.
#pragma once
#include <cstdint>
#include <string>

#include "r1dist/log/meter.h"  // format_duration

namespace r1dist {

struct StepOutcome;

class Progress {
 public:
  Progress(int64_t total_steps, int64_t first_step) : total_(total_steps), first_(first_step) {}
  // Rank 0 prints it (rewritten in place on a terminal, plain lines otherwise).
  void report(int64_t step, const StepOutcome& s, double step_seconds);

 private:
  int64_t total_, first_;
  double ema_step_s_ = 0;
};

}  // namespace r1dist
