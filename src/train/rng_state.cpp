#include "r1dist/train/rng_state.h"

#include <cstring>
#include <mutex>

#include "r1dist/base/error.h"

namespace r1dist {

uint64_t rank_seed(int64_t train_seed, int rank, int64_t step) {
  return uint64_t(train_seed) + 1000003ull * uint64_t(rank) + uint64_t(step);
}

std::string save_rng(const at::Device& device) {
  std::string out;
  auto add = [&](at::Generator gen) {
    at::Tensor st;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      st = gen.get_state();
    }
    const uint64_t n = static_cast<uint64_t>(st.numel());
    out.append(reinterpret_cast<const char*>(&n), 8);
    out.append(static_cast<const char*>(st.data_ptr()), n);
  };
  add(at::globalContext().defaultGenerator(at::kCPU));
  if (device.is_cuda()) add(at::globalContext().defaultGenerator(device));
  return out;
}

void load_rng(const std::string& bytes, const at::Device& device) {
  size_t pos = 0;
  auto next = [&](at::Generator gen) {
    check(pos + 8 <= bytes.size(), "checkpoint RNG state is truncated");
    uint64_t n = 0;
    std::memcpy(&n, bytes.data() + pos, 8);
    pos += 8;
    check(pos + n <= bytes.size(), "checkpoint RNG state is truncated");
    auto st = at::empty({static_cast<int64_t>(n)}, at::kByte);
    std::memcpy(st.data_ptr(), bytes.data() + pos, n);
    pos += n;
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st);
  };
  next(at::globalContext().defaultGenerator(at::kCPU));
  if (device.is_cuda() && pos < bytes.size()) next(at::globalContext().defaultGenerator(device));
}

}  // namespace r1dist
