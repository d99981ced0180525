// Cache of pre-token -> ids results (most words of a corpus repeat). One per encoding
// thread, so lookups take no lock. Bounded: keys longer than kMaxKey bytes are not cached
// and the whole cache is dropped when it reaches its entry or byte budget.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace r1dist::tok {

class PretokenCache {
 public:
  static constexpr size_t kMaxKey = 64;
  explicit PretokenCache(size_t max_entries = size_t(1) << 16) : max_entries_(max_entries) {
    size_t cap = 1;
    while (cap < max_entries * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }

  static uint64_t hash(std::string_view s) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (s.size() * 0xFF51AFD7ED558CCDULL);
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
      h ^= h >> 29;
    }
    if (i < s.size()) {
      uint64_t w = 0;
      std::memcpy(&w, s.data() + i, s.size() - i);
      h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    }
    return h ^ (h >> 32);
  }

  // Appends the cached ids of `key` to out and returns true, or returns false.
  bool get(std::string_view key, uint64_t h, std::vector<int32_t>& out) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return false;
      if (s.hash == h && s.key_len == key.size() && !std::memcmp(keys_.data() + s.key_off, key.data(), key.size())) {
        out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.n_ids);
        return true;
      }
    }
  }

  void put(std::string_view key, uint64_t h, const int32_t* ids, size_t n) {
    if (key.empty() || key.size() > kMaxKey) return;
    if (size_ >= max_entries_) clear();
    size_t i = h & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] = Slot{h, uint32_t(keys_.size()), uint32_t(ids_.size()), uint16_t(key.size()), uint16_t(n)};
    keys_.append(key);
    ids_.insert(ids_.end(), ids, ids + n);
    ++size_;
  }

  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    size_ = 0;
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, ids_off = 0;
    uint16_t key_len = 0, n_ids = 0;
  };
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t mask_ = 0, size_ = 0, max_entries_;
};

}  // namespace r1dist::tok
