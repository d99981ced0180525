#include "r1dist/tensor/device_timer.h"

#include <chrono>
#include <deque>

#include "r1dist/base/error.h"
#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace r1dist {

struct DeviceTimer::Impl {
  bool cuda = false;
  std::deque<std::chrono::steady_clock::time_point> host;
#ifdef R1DIST_WITH_CUDA
  std::deque<at::cuda::CUDAEvent> events;
#endif
};

DeviceTimer::DeviceTimer(const at::Device& device) : impl_(std::make_unique<Impl>()) {
  impl_->cuda = device.is_cuda();
#ifndef R1DIST_WITH_CUDA
  check(!impl_->cuda, "DeviceTimer: a CUDA device in a build without CUDA");
#endif
}

DeviceTimer::~DeviceTimer() = default;

size_t DeviceTimer::mark() {
#ifdef R1DIST_WITH_CUDA
  if (impl_->cuda) {
    impl_->events.emplace_back(cudaEventDefault);
    impl_->events.back().record();
    return impl_->events.size() - 1;
  }
#endif
  impl_->host.push_back(std::chrono::steady_clock::now());
  return impl_->host.size() - 1;
}

double DeviceTimer::seconds(size_t from, size_t to) const {
#ifdef R1DIST_WITH_CUDA
  if (impl_->cuda) {
    check(from < impl_->events.size() && to < impl_->events.size(), "DeviceTimer: no such mark");
    impl_->events[to].synchronize();
    return double(impl_->events[from].elapsed_time(impl_->events[to])) / 1e3;
  }
#endif
  check(from < impl_->host.size() && to < impl_->host.size(), "DeviceTimer: no such mark");
  return std::chrono::duration<double>(impl_->host[to] - impl_->host[from]).count();
}

void DeviceTimer::clear() {
  impl_->host.clear();
#ifdef R1DIST_WITH_CUDA
  impl_->events.clear();
#endif
}

}  // namespace r1dist
