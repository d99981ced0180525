#include "r1dist/tensor/device.h"

#include <unistd.h>

#include "r1dist/base/error.h"

#if defined(R1DIST_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace r1dist {

at::ScalarType to_scalar_type(ComputeDtype d) {
  return d == ComputeDtype::bf16 ? at::kBFloat16 : at::kFloat;
}

at::Device parse_device(const std::string& s, int local_rank) {
  // Ranks beyond the GPU count share GPUs round-robin (usable with dist.backend = "mpi";
  // NCCL refuses two ranks on one GPU).
  auto rank_gpu = [&]() {
    const int n = std::max<int>(1, static_cast<int>(at::getNumGPUs()));
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank % n));
  };
  if (s == "auto") {
    if (at::hasCUDA()) return rank_gpu();
    return at::Device(at::kCPU);
  }
  if (s == "cpu") return at::Device(at::kCPU);
  if (s == "cuda" || s.rfind("cuda:", 0) == 0) {
    if (!at::hasCUDA())
      throw UsageError("device '" + s + "' requested but this build/machine has no CUDA" +
                       "\nHINT: use --device cpu, or build against a CUDA libtorch");
    return s == "cuda" ? rank_gpu() : at::Device(s);
  }
  throw UsageError("unknown device '" + s + "' (use auto, cpu, cuda or cuda:N)");
}

int ranks_sharing_device(const std::string& choice, int local_rank, int local_world) {
  const at::Device mine = parse_device(choice, local_rank);
  int n = 0;
  for (int r = 0; r < std::max(1, local_world); ++r) n += parse_device(choice, r) == mine;
  return std::max(1, n);
}

at::Device resolve_device(DeviceChoice d, int local_rank) { return parse_device(to_string(d), local_rank); }

DeviceStart::DeviceStart(const at::Device& d) {
#if defined(R1DIST_WITH_CUDA)
  if (!d.is_cuda()) return;
  thread_ = std::thread([d] {
    try {
      select_device(d);
      const auto x = at::ones({64, 64}, at::TensorOptions().dtype(at::kBFloat16).device(d));
      const auto y = at::matmul(x, x);
      const auto host = at::empty({int64_t(1) << 20}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      c10::cuda::device_synchronize();
    } catch (...) {
    }
  });
#else
  (void)d;
#endif
}

void select_device(const at::Device& d) {
#if defined(R1DIST_WITH_CUDA)
  if (d.is_cuda()) c10::cuda::set_device(d.index());
#else
  (void)d;
#endif
}

double device_memory_bytes(const at::Device& d) {
#if defined(R1DIST_WITH_CUDA)
  if (d.is_cuda()) {
    size_t free_b = 0, total_b = 0;
    c10::cuda::CUDAGuard guard(d.index());
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return double(total_b);
    return 0.0;
  }
#endif
  (void)d;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 0.0;
}

void reset_peak_memory(const at::Device& d) {
#if defined(R1DIST_WITH_CUDA)
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#endif
  (void)d;
}

double peak_memory_gb(const at::Device& d) {
#if defined(R1DIST_WITH_CUDA)
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    return double(stats.allocated_bytes[0].peak) / 1e9;
  }
#endif
  (void)d;
  return 0.0;
}

}  // namespace r1dist
