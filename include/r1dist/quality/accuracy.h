// An accuracy with its uncertainty: k correct of n, and the Wilson score interval (95%:
// z = 1.96), which stays inside [0, 1] and is sensible for small n and for k = 0 or k = n.
#pragma once
#include <cstdint>

namespace r1dist {

struct Accuracy {
  int64_t correct = 0, total = 0;
  double value = 0, low = 0, high = 0;  // value = correct / total; [low, high] the interval
};

Accuracy wilson_accuracy(int64_t correct, int64_t total, double z = 1.96);

}  // namespace r1dist
