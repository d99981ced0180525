// Tensors copied out of mapped bytes ahead of their use on several threads
// (tensor/host_prefetch.h), the way a model's weights are loaded: every copy equal to its
// source, in order, whatever the chunk size, the budget ahead and the thread count.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "r1dist/base/error.h"
#include "r1dist/tensor/host_prefetch.h"

namespace r1dist {
namespace {

struct Sources {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<HostSource> list;
};

// Sources of several dtypes and shapes, an empty one and one larger than any budget below,
// each filled with a pattern of its own.
Sources make_sources() {
  const std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> specs = {
      {at::kBFloat16, {3, 5}}, {at::kFloat, {}},        {at::kFloat, {0, 4}}, {at::kByte, {1000}},
      {at::kHalf, {7}},        {at::kFloat, {17, 3}},   {at::kBFloat16, {1}}, {at::kLong, {9}}};
  Sources s;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& [dt, shape] = specs[i];
    const int64_t numel = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<int64_t>());
    std::vector<uint8_t> b(size_t(numel) * c10::elementSize(dt));
    for (size_t j = 0; j < b.size(); ++j) b[j] = uint8_t(j * 31 + i * 7 + 1);
    s.bytes.push_back(std::move(b));
  }
  for (size_t i = 0; i < specs.size(); ++i) s.list.push_back(HostSource{s.bytes[i].data(), specs[i].first, specs[i].second});
  return s;
}

TEST(HostPrefetch, EveryCopyEqualsItsSourceInOrder) {
  const Sources s = make_sources();
  for (int threads : {1, 3, 8})
    for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(64), int64_t(1) << 20})
      for (int64_t ahead : {int64_t(0), int64_t(16), int64_t(1) << 30}) {
        SCOPED_TRACE("threads " + std::to_string(threads) + ", chunk " + std::to_string(chunk) + ", ahead " +
                     std::to_string(ahead));
        HostPrefetcher p(s.list, PrefetchOptions{false, threads, ahead, chunk});
        ASSERT_EQ(p.size(), s.list.size());
        for (size_t i = 0; i < s.list.size(); ++i) {
          const at::Tensor t = p.next();
          ASSERT_EQ(t.scalar_type(), s.list[i].dtype) << "source " << i;
          ASSERT_EQ(t.sizes().vec(), s.list[i].shape) << "source " << i;
          ASSERT_TRUE(t.is_contiguous());
          ASSERT_EQ(size_t(t.nbytes()), s.bytes[i].size());
          if (!s.bytes[i].empty()) {
            EXPECT_NE(t.data_ptr(), static_cast<const void*>(s.bytes[i].data())) << "a copy, not the source";
            EXPECT_EQ(std::memcmp(t.data_ptr(), s.bytes[i].data(), s.bytes[i].size()), 0) << "source " << i;
          }
        }
        EXPECT_THROW(p.next(), Error);  // nothing is left
      }
}

TEST(HostPrefetch, SourcesNotTakenAreDroppedWithoutWaiting) {
  const Sources s = make_sources();
  for (int taken : {0, 1, 4}) {
    HostPrefetcher p(s.list, PrefetchOptions{false, 2, 16, 8});
    for (int i = 0; i < taken; ++i) p.next();
  }  // the destructor stops threads that wait for budget or have work left
  HostPrefetcher none({}, PrefetchOptions{});
  EXPECT_EQ(none.size(), 0u);
  EXPECT_THROW(none.next(), Error);
}

TEST(HostPrefetch, PageLockedCopiesForAGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA: page-locked memory needs it";
  const Sources s = make_sources();
  {
    HostPrefetcher p(s.list, PrefetchOptions{true, 4, 64, 16});
    for (size_t i = 0; i < s.list.size(); ++i) {
      const at::Tensor t = p.next();
      // A zero-byte tensor has no memory to lock (libtorch reports it unpinned).
      if (!s.bytes[i].empty()) EXPECT_TRUE(t.is_pinned()) << "source " << i;
      const at::Tensor back = t.to(at::kCUDA, /*non_blocking=*/true).cpu();
      EXPECT_EQ(std::memcmp(back.data_ptr(), s.bytes[i].data(), s.bytes[i].size()), 0) << "source " << i;
    }
  }
  release_cached_pinned_memory();
}

}  // namespace
}  // namespace r1dist
