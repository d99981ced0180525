#include "r1dist/tensor/step_profiler.h"

#include <cstdlib>

#include "r1dist/base/error.h"
#include "r1dist/log/log.h"
#include "r1dist/tensor/compat.h"

#if defined(R1DIST_WITH_CUDA) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))
#define R1DIST_HAS_KINETO 1
#include <torch/csrc/autograd/profiler_kineto.h>
#else
#define R1DIST_HAS_KINETO 0
#endif

namespace r1dist {

StepProfiler StepProfiler::from_env(int rank) {
  StepProfiler p;
  const char* step = std::getenv("R1DIST_PROFILE_STEP");
  if (!step || !*step) return p;
  char* end = nullptr;
  const long long k = std::strtoll(step, &end, 10);
  if (*end || k < 1) throw UsageError(std::string("R1DIST_PROFILE_STEP=") + step + ": expected a step number >= 1");
  const char* out = std::getenv("R1DIST_PROFILE_OUT");
  if (!out || !*out) throw UsageError("R1DIST_PROFILE_STEP is set but R1DIST_PROFILE_OUT (the trace file) is not");
  if (!R1DIST_HAS_KINETO) throw UsageError("R1DIST_PROFILE_STEP: this build has no CUDA libtorch >= 2.1 (Kineto)");
  if (rank != 0) return p;
  p.step_ = k;
  p.out_ = out;
  return p;
}

void StepProfiler::before(int64_t step) {
  if (step != step_) return;
#if R1DIST_HAS_KINETO
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const prof::ProfilerConfig cfg(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> acts{ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(cfg, acts);
  prof::enableProfiler(cfg, acts);
#endif
}

void StepProfiler::after(int64_t step) {
  if (step != step_) return;
#if R1DIST_HAS_KINETO
  compat::synchronize(at::Device(at::kCUDA));
  auto result = torch::autograd::profiler::disableProfiler();
  result->save(out_);
  log::info("profile of step ", step, " written to ", out_);
#endif
}

}  // namespace r1dist
