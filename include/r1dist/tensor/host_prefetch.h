// Reading a model's tensors out of mapped files ahead of their use. One thread copying one
// tensor at a time out of the page cache, and a pageable copy of it to the GPU, load a 14B
// model at a few GB/s; here several threads copy chunks of the next tensors into owned host
// tensors (page-locked when they go to a GPU, so that the copy to the device is asynchronous
// and needs no bounce buffer) while the caller converts or quantises the previous ones.
#pragma once
#include <ATen/ATen.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace r1dist {

// One tensor's bytes where they lie (a mapping that outlives the prefetcher), its dtype and shape.
struct HostSource {
  const uint8_t* data = nullptr;
  at::ScalarType dtype = at::kByte;
  std::vector<int64_t> shape;
};

struct PrefetchOptions {
  bool pinned = false;                   // page-locked tensors (for a CUDA device; needs a CUDA libtorch)
  int threads = 0;                       // copy threads; 0 = the machine's cores, at most 8
  int64_t ahead_bytes = int64_t(1) << 30;  // copied but not yet taken, at most (one tensor always)
  int64_t chunk_bytes = int64_t(32) << 20;  // the unit one thread copies
};

class HostPrefetcher {
 public:
  HostPrefetcher(std::vector<HostSource> sources, PrefetchOptions opt = {});
  ~HostPrefetcher();  // stops the threads (tensors not taken are dropped)
  HostPrefetcher(const HostPrefetcher&) = delete;
  HostPrefetcher& operator=(const HostPrefetcher&) = delete;

  // The next source's copy, in the order given; waits for it. Rethrows a copy thread's error.
  at::Tensor next();
  size_t size() const { return sources_.size(); }
  int threads() const { return int(threads_.size()); }

 private:
  struct Slot {
    at::Tensor buf;
    int64_t bytes = 0, chunks = 1, done = 0;
    bool allocated = false;
  };
  void work();
  bool may_claim() const;

  std::vector<HostSource> sources_;
  PrefetchOptions opt_;
  std::vector<Slot> slots_;
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable cv_;
  size_t claim_ = 0;           // the source whose chunk is handed out next
  int64_t claim_chunk_ = 0;
  size_t taken_ = 0;           // sources returned by next()
  int64_t ahead_ = 0;          // bytes of the claimed sources not yet taken
  bool stop_ = false;
  std::exception_ptr error_;
};

// Gives the page-locked host memory that libtorch's caching allocator keeps for reuse back to
// the system (after a load, where nothing will use it again; no-op without CUDA).
void release_cached_pinned_memory();

}  // namespace r1dist
