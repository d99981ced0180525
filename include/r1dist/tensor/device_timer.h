// Elapsed device time between marks, for time splits inside a step: CUDA events recorded on
// the current stream (no host sync until a time is read) on a GPU, the host clock on the CPU
// (where work is synchronous).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "r1dist/tensor/compat.h"

namespace r1dist {

// Median wall seconds of `fn` on `dev` (the device synchronized around each run) over `reps`
// timed runs after `warm` untimed ones.
template <class F>
double time_median(const at::Device& dev, int warm, int reps, F&& fn) {
  for (int i = 0; i < warm; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    compat::synchronize(dev);
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    compat::synchronize(dev);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

class DeviceTimer {
 public:
  explicit DeviceTimer(const at::Device& device);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;
  // Records a mark after the work queued so far; returns its index.
  size_t mark();
  // Seconds from mark `from` to mark `to` (waits for the device to reach `to`).
  double seconds(size_t from, size_t to) const;
  void clear();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1dist
