// Elapsed device time between marks, for time splits inside a step: CUDA events recorded on
// the current stream (no host sync until a time is read) on a GPU, the host clock on the CPU
// (where work is synchronous).
#pragma once
#include <ATen/ATen.h>

#include <memory>

namespace r1dist {

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
