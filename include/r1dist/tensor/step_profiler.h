// A Kineto trace (CPU operators and CUDA kernels, Chrome trace format) of one training step,
// for finding where a step's time goes: R1DIST_PROFILE_STEP=K (1-based) and
// R1DIST_PROFILE_OUT=FILE.json make rank 0 trace step K (tools/gpu/trace_summary.py sums its
// kernels by kind). Needs a CUDA build of libtorch >= 2.1; elsewhere the variables are refused.
#pragma once
#include <cstdint>
#include <string>

namespace r1dist {

class StepProfiler {
 public:
  // From the environment; inactive when R1DIST_PROFILE_STEP is unset or rank != 0.
  static StepProfiler from_env(int rank);
  void before(int64_t step);  // step: 1-based, the one about to run
  void after(int64_t step);   // the same step, done (waits for the device, writes the trace)

 private:
  int64_t step_ = 0;  // 0 = inactive
  std::string out_;
};

}  // namespace r1dist
