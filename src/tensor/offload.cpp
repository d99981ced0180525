#include "r1dist/tensor/offload.h"

#include <algorithm>
#include <string>
#include <vector>

#include "r1dist/base/error.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/device_timer.h"
#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace r1dist {

namespace {
thread_local ActivationOffload* t_active = nullptr;
thread_local bool t_attention = false;
}  // namespace

struct ActivationOffload::Impl {
  struct Entry {
    at::Tensor host;  // the values, in pool buffer `key`
    at::Tensor back;  // on the device again once fetched, until taken
    size_t group = 0;
    bool taken = false;
  };
  struct Group {
    std::vector<int64_t> keys;
    bool fetched = false;
#ifdef R1DIST_WITH_CUDA
    at::cuda::CUDAEvent stored, back;  // its copies to the host, and back, are done
#endif
  };
  explicit Impl(at::Device d) : device(d) {}
  at::Device device;
  std::vector<at::Tensor> pool;  // byte buffers (page-locked with CUDA), one per key, reused by later forwards
  std::vector<Entry> entries;
  std::vector<std::unique_ptr<Group>> groups;
  int64_t bytes = 0;
#ifdef R1DIST_WITH_CUDA
  c10::optional<c10::cuda::CUDAStream> to_host, to_device;
#endif
};

ActivationOffload::ActivationOffload(at::Device device) : impl_(std::make_unique<Impl>(device)) {
  if (!device.is_cuda()) return;
#ifdef R1DIST_WITH_CUDA
  if (!device.has_index()) impl_->device = at::Device(at::kCUDA, c10::cuda::current_device());
  device = impl_->device;
  impl_->to_host = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
  impl_->to_device = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
#else
  throw Error("ActivationOffload: a CUDA device in a build without CUDA");
#endif
}

ActivationOffload::~ActivationOffload() {
  try {
    reset();  // no copy may still read or write a buffer freed here
  } catch (...) {
  }
}

void ActivationOffload::reset() {
#ifdef R1DIST_WITH_CUDA
  if (impl_->to_host) {
    impl_->to_host->synchronize();
    impl_->to_device->synchronize();
  }
#endif
  impl_->entries.clear();
  impl_->groups.clear();
  impl_->bytes = 0;
}

void ActivationOffload::begin_group() {
  impl_->groups.push_back(std::make_unique<Impl::Group>());
#ifdef R1DIST_WITH_CUDA
  const size_t g = impl_->groups.size() - 1;
  if (impl_->to_host && g >= size_t(kInFlight)) impl_->groups[g - size_t(kInFlight)]->stored.synchronize();
#endif
}

int64_t ActivationOffload::put(const at::Tensor& t) {
  check(!impl_->groups.empty(), "ActivationOffload::put before begin_group");
  check(t.device() == impl_->device, "ActivationOffload::put: a tensor on " + t.device().str() + ", not " +
                                         impl_->device.str());
  const at::Tensor src = t.contiguous();
  const auto key = int64_t(impl_->entries.size());
  const int64_t nbytes = src.numel() * int64_t(src.element_size());
  if (impl_->pool.size() <= size_t(key)) impl_->pool.resize(size_t(key) + 1);
  at::Tensor& buf = impl_->pool[size_t(key)];
  if (!buf.defined() || buf.numel() < nbytes)
    buf = at::empty({nbytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(src.is_cuda()));
  Impl::Entry e;
  e.host = buf.narrow(0, 0, nbytes).view(src.scalar_type()).view(src.sizes());
  e.group = impl_->groups.size() - 1;
  auto& group = *impl_->groups.back();
#ifdef R1DIST_WITH_CUDA
  if (impl_->to_host) {
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream(impl_->device.index()));
    ready.block(*impl_->to_host);
    {
      const c10::cuda::CUDAStreamGuard guard(*impl_->to_host);
      e.host.copy_(src, /*non_blocking=*/true);
    }
    // src's block goes back to the allocator only once the copy stream has read it.
    c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(), *impl_->to_host);
    group.stored.record(*impl_->to_host);
  } else
#endif
  {
    e.host.copy_(src);
  }
  impl_->bytes += nbytes;
  group.keys.push_back(key);
  impl_->entries.push_back(std::move(e));
  return key;
}

void ActivationOffload::fetch(size_t g) {
  auto& group = *impl_->groups[g];
  if (group.fetched) return;
  group.fetched = true;
  // Device buffers allocated on the compute stream (which frees them after their use).
  for (const int64_t key : group.keys) {
    auto& e = impl_->entries[size_t(key)];
    e.back = at::empty(e.host.sizes(), at::TensorOptions().dtype(e.host.scalar_type()).device(impl_->device));
  }
#ifdef R1DIST_WITH_CUDA
  if (impl_->to_device) {
    // The copies start once the compute stream has reached this point (the buffers are free
    // there) and the group's copies to the host are done.
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream(impl_->device.index()));
    ready.block(*impl_->to_device);
    group.stored.block(*impl_->to_device);
    {
      const c10::cuda::CUDAStreamGuard guard(*impl_->to_device);
      for (const int64_t key : group.keys) {
        auto& e = impl_->entries[size_t(key)];
        e.back.copy_(e.host, /*non_blocking=*/true);
      }
    }
    group.back.record(*impl_->to_device);
    return;
  }
#endif
  for (const int64_t key : group.keys) {
    auto& e = impl_->entries[size_t(key)];
    e.back.copy_(e.host);
  }
}

at::Tensor ActivationOffload::take(int64_t key) {
  check(key >= 0 && size_t(key) < impl_->entries.size() && !impl_->entries[size_t(key)].taken,
        "ActivationOffload::take: key " + std::to_string(key) + " was never put or was taken already");
  auto& e = impl_->entries[size_t(key)];
  fetch(e.group);
  if (e.group > 0) fetch(e.group - 1);  // the prefetch: the group the backward needs next
#ifdef R1DIST_WITH_CUDA
  if (impl_->to_device) impl_->groups[e.group]->back.block(c10::cuda::getCurrentCUDAStream(impl_->device.index()));
#endif
  e.taken = true;
  return std::move(e.back);
}

void ActivationOffload::forward_done() {
  if (!impl_->groups.empty()) fetch(impl_->groups.size() - 1);
}

int64_t ActivationOffload::bytes() const { return impl_->bytes; }

ActivationOffload::Scope::Scope(ActivationOffload& offload, bool attention)
    : previous_(t_active), previous_attention_(t_attention) {
  t_active = &offload;
  t_attention = attention;
}
ActivationOffload::Scope::~Scope() {
  t_active = previous_;
  t_attention = previous_attention_;
}
ActivationOffload* ActivationOffload::active() { return t_active; }
bool ActivationOffload::attention_active() { return t_active != nullptr && t_attention; }

at::Tensor offload_saved(torch::autograd::AutogradContext* ctx, const std::string& name, const at::Tensor& t,
                         bool attention_part) {
  ActivationOffload* off = ActivationOffload::active();
  if (!off || (attention_part && !ActivationOffload::attention_active()) || !t.defined() || t.numel() == 0) return t;
  ctx->saved_data["offload"] = reinterpret_cast<int64_t>(off);
  ctx->saved_data[name] = off->put(t);
  return at::Tensor();
}

at::Tensor restore_saved(torch::autograd::AutogradContext* ctx, const std::string& name, const at::Tensor& saved) {
  const auto it = ctx->saved_data.find(name);
  if (it == ctx->saved_data.end()) return saved;
  return reinterpret_cast<ActivationOffload*>(ctx->saved_data["offload"].toInt())->take(it->second.toInt());
}

double pinned_host_cap(int local_ranks) {
  return kPinnedHostShare * device_memory_bytes(at::Device(at::kCPU)) / std::max(1, local_ranks);
}

OffloadRates measure_offload_rates(const at::Device& device, int64_t hidden, int64_t intermediate,
                                   at::ScalarType dtype, double host_bytes) {
  OffloadRates r;
  r.host_bytes = host_bytes;
  if (!device.is_cuda()) return r;
  // One warm-up run (allocations, cuBLAS's choice of kernel), then the median.
  auto median_s = [&](int reps, auto&& fn) { return time_median(device, 1, reps, fn); };
  {
    const int64_t bytes = int64_t(256) << 20;
    const auto d = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device));
    const auto h = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    r.link_bytes_per_s = double(bytes) / median_s(5, [&] { h.copy_(d, /*non_blocking=*/true); });
  }
  {
    const int64_t rows = 4096;
    const auto opts = at::TensorOptions().dtype(dtype).device(device);
    const auto x = at::randn({rows, hidden}, opts), w = at::randn({intermediate, hidden}, opts);
    r.flops_per_s = 2.0 * double(rows) * double(hidden) * double(intermediate) / median_s(3, [&] { (void)at::linear(x, w); });
  }
  return r;
}

}  // namespace r1dist
