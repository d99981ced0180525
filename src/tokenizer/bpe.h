// Byte-pair merging on token ids: a hash table from an adjacent id pair to (rank, merged
// id), and the merge loop that repeatedly applies the lowest-ranked adjacent pair
// (leftmost first on ties) until none is left, as HF tokenizers' BPE does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace r1dist::tok {

class BpeMerges {
 public:
  static constexpr int32_t kNoRank = INT32_MAX;

  // Rank = order of the calls. Returns false if the pair was already present (a duplicate
  // merge keeps its first, lowest rank, as in HF).
  bool add(int32_t left, int32_t right, int32_t merged);
  void reserve(size_t n);
  size_t size() const { return by_rank_.size(); }

  // Rank of the pair (kNoRank if none); *merged receives the merged id.
  int32_t lookup(int32_t left, int32_t right, int32_t* merged) const {
    const uint64_t key = pack(left, right);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const Entry& e = table_[i];
      if (e.key == key) {
        *merged = e.merged;
        return e.rank;
      }
      if (e.key == kEmpty) return kNoRank;
    }
  }

  // Merges `ids` in place. Short words use a quadratic scan over a small array; long ones
  // (a 10 MB run of letters is one pre-token) a heap, O(n log n) time and O(n) memory.
  void merge(std::vector<int32_t>& ids) const;
  // The two algorithms, exposed so that tests can check they agree.
  void merge_small(std::vector<int32_t>& ids) const;
  void merge_heap(std::vector<int32_t>& ids) const;
  static constexpr size_t kSmallWord = 48;

  struct Merge {
    int32_t left, right, merged;
  };
  // The merges in rank order.
  const std::vector<Merge>& ranked() const { return by_rank_; }

 private:
  struct Entry {
    uint64_t key;
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ULL) >> shift_); }
  void grow();
  void rehash(size_t capacity);  // a power of two

  std::vector<Entry> table_;
  std::vector<Merge> by_rank_;
  size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace r1dist::tok
