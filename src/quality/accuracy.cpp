#include "r1dist/quality/accuracy.h"

#include <cmath>

namespace r1dist {

Accuracy wilson_accuracy(int64_t correct, int64_t total, double z) {
  Accuracy a;
  a.correct = correct;
  a.total = total;
  if (total <= 0) return a;
  const double n = double(total), p = double(correct) / n, z2 = z * z;
  const double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  a.value = p;
  a.low = std::fmax(0.0, centre - half);
  a.high = std::fmin(1.0, centre + half);
  return a;
}

}  // namespace r1dist
