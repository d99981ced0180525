#include "r1dist/quality/eval_summary.h"

namespace r1dist {

bool EvalSummary::collapsed() const {
  for (const auto& g : generations)
    if (g.repetition.collapsed) return true;
  return false;
}

double EvalSummary::mean_repeated_4gram_share() const {
  if (generations.empty()) return 0;
  double s = 0;
  for (const auto& g : generations) s += g.repetition.repeated_4gram_share;
  return s / double(generations.size());
}

}  // namespace r1dist
