#include "r1dist/tensor/host_prefetch.h"

#include <algorithm>
#include <cstring>

#include "r1dist/base/error.h"

#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CachingHostAllocator.h>
#endif

namespace r1dist {

HostPrefetcher::HostPrefetcher(std::vector<HostSource> sources, PrefetchOptions opt)
    : sources_(std::move(sources)), opt_(opt), slots_(sources_.size()) {
  check(opt_.chunk_bytes > 0 && opt_.ahead_bytes >= 0, "HostPrefetcher: chunk_bytes > 0 and ahead_bytes >= 0");
  for (size_t i = 0; i < sources_.size(); ++i) {
    const auto& s = sources_[i];
    int64_t numel = 1;
    for (auto d : s.shape) numel *= d;
    slots_[i].bytes = numel * int64_t(c10::elementSize(s.dtype));
    slots_[i].chunks = std::max<int64_t>(1, (slots_[i].bytes + opt_.chunk_bytes - 1) / opt_.chunk_bytes);
  }
  int n = opt_.threads > 0 ? opt_.threads : int(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  n = int(std::min<size_t>(size_t(n), std::max<size_t>(1, sources_.size())));
  threads_.reserve(size_t(n));
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
}

HostPrefetcher::~HostPrefetcher() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// A new source may be started while the bytes ahead of the caller stay within the budget; the
// one the caller waits for always may, and so may the rest of a source already started.
bool HostPrefetcher::may_claim() const {
  if (claim_ >= sources_.size()) return false;
  if (claim_chunk_ > 0 || claim_ == taken_) return true;
  return ahead_ + slots_[claim_].bytes <= opt_.ahead_bytes;
}

void HostPrefetcher::work() {
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || error_ || claim_ >= sources_.size() || may_claim(); });
    if (stop_ || error_ || claim_ >= sources_.size()) return;
    const size_t i = claim_;
    const int64_t c = claim_chunk_;
    Slot& slot = slots_[i];
    if (c == 0) ahead_ += slot.bytes;
    if (++claim_chunk_ == slot.chunks) {
      ++claim_;
      claim_chunk_ = 0;
    }
    try {
      if (c == 0) {
        // The first chunk's thread allocates (page-locking can take a while: outside the lock).
        lk.unlock();
        auto opts = at::TensorOptions().dtype(sources_[i].dtype).pinned_memory(opt_.pinned);
        at::Tensor buf = at::empty(sources_[i].shape, opts);
        lk.lock();
        slot.buf = std::move(buf);
        slot.allocated = true;
        cv_.notify_all();
      } else {
        cv_.wait(lk, [&] { return slot.allocated || stop_ || error_; });
        if (!slot.allocated) return;
      }
      auto* dst = static_cast<uint8_t*>(slot.buf.data_ptr());
      const int64_t begin = c * opt_.chunk_bytes, n = std::min(opt_.chunk_bytes, slot.bytes - begin);
      lk.unlock();
      if (n > 0) std::memcpy(dst + begin, sources_[i].data + begin, size_t(n));
      lk.lock();
      if (++slot.done == slot.chunks) cv_.notify_all();
    } catch (...) {
      if (!lk.owns_lock()) lk.lock();
      if (!error_) error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
  }
}

at::Tensor HostPrefetcher::next() {
  std::unique_lock<std::mutex> lk(m_);
  check(taken_ < sources_.size(), "HostPrefetcher::next: every source was taken");
  Slot& slot = slots_[taken_];
  cv_.wait(lk, [&] { return error_ || slot.done == slot.chunks; });
  if (error_) std::rethrow_exception(error_);
  at::Tensor out = std::move(slot.buf);
  slot.buf = at::Tensor();
  ahead_ -= slot.bytes;
  ++taken_;
  lk.unlock();
  cv_.notify_all();
  return out;
}

void release_cached_pinned_memory() {
#ifdef R1DIST_WITH_CUDA
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  at::cuda::CachingHostAllocator_emptyCache();
#pragma GCC diagnostic pop
#endif
}

}  // namespace r1dist
