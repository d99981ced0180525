#include "r1dist/train/progress.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "r1dist/data/packing.h"
#include "r1dist/log/log.h"
#include "r1dist/train/step.h"

namespace r1dist {

void Progress::report(int64_t step, const StepOutcome& s, double dt) {
  ema_step_s_ = step == first_ + 1 ? dt : 0.8 * ema_step_s_ + 0.2 * dt;
  std::ostringstream os;
  os << "step " << step << "/" << total_ << "  loss " << std::fixed << std::setprecision(4) << s.loss << "  lr "
     << std::scientific << std::setprecision(2) << s.lr << "  |g| " << std::fixed << std::setprecision(3)
     << s.grad_norm << "  " << std::setprecision(0) << double(s.real_tokens) / dt << " real tok/s ("
     << double(s.slot_tokens) / dt << " slots/s, " << std::setprecision(1)
     << 100.0 * SlotCount{s.real_tokens, s.slot_tokens}.padding_share() << "% pad)  "
     << std::setprecision(1) << 100.0 * s.comm_seconds / dt << "% comm  ETA "
     << format_duration(ema_step_s_ * double(total_ - step));
  log::progress(os.str());
}

}  // namespace r1dist
