#include "tokenizer/bpe.h"

#include <algorithm>
#include <functional>

namespace r1dist::tok {

void BpeMerges::grow() { rehash(table_.empty() ? 1024 : table_.size() * 2); }

void BpeMerges::rehash(size_t cap) {
  std::vector<Entry> old;
  old.swap(table_);
  table_.assign(cap, Entry{kEmpty, kNoRank, -1});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  for (const Entry& e : old) {
    if (e.key == kEmpty) continue;
    size_t i = slot(e.key);
    while (table_[i].key != kEmpty) i = (i + 1) & mask_;
    table_[i] = e;
  }
}

void BpeMerges::reserve(size_t n) {
  by_rank_.reserve(n);
  size_t cap = 1024;
  while (cap < 2 * (n + 1)) cap *= 2;
  if (cap > table_.size()) rehash(cap);
}

bool BpeMerges::add(int32_t left, int32_t right, int32_t merged) {
  if ((by_rank_.size() + 1) * 2 > table_.size()) grow();
  const int32_t rank = static_cast<int32_t>(by_rank_.size());
  by_rank_.push_back({left, right, merged});
  const uint64_t key = pack(left, right);
  size_t i = slot(key);
  while (table_[i].key != kEmpty && table_[i].key != key) i = (i + 1) & mask_;
  const bool fresh = table_[i].key == kEmpty;
  // A repeated pair takes its last rank, as HF tokenizers' and the JS reference's maps do.
  table_[i] = Entry{key, rank, merged};
  return fresh;
}

void BpeMerges::merge(std::vector<int32_t>& ids) const {
  if (ids.size() < 2) return;
  if (ids.size() <= kSmallWord) merge_small(ids);
  else merge_heap(ids);
}

void BpeMerges::merge_small(std::vector<int32_t>& ids) const {
  size_t n = ids.size();
  if (n < 2) return;
  int32_t rank_buf[kSmallWord], merged_buf[kSmallWord];
  std::vector<int32_t> rank_vec, merged_vec;
  int32_t* rank = rank_buf;
  int32_t* merged = merged_buf;
  if (n > kSmallWord) {
    rank_vec.resize(n);
    merged_vec.resize(n);
    rank = rank_vec.data();
    merged = merged_vec.data();
  }
  int32_t* id = ids.data();
  for (size_t i = 0; i + 1 < n; ++i) rank[i] = lookup(id[i], id[i + 1], &merged[i]);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == kNoRank) break;
    id[best] = merged[best];
    for (size_t j = best + 1; j + 1 < n; ++j) id[j] = id[j + 1];
    for (size_t j = best + 1; j + 2 < n; ++j) {
      rank[j] = rank[j + 1];
      merged[j] = merged[j + 1];
    }
    --n;
    if (best + 1 < n) rank[best] = lookup(id[best], id[best + 1], &merged[best]);
    if (best > 0) rank[best - 1] = lookup(id[best - 1], id[best], &merged[best - 1]);
  }
  ids.resize(n);
}

void BpeMerges::merge_heap(std::vector<int32_t>& ids) const {
  const size_t n = ids.size();
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint64_t> heap;  // (rank << 32) | left position: smallest rank, then leftmost
  heap.reserve(n);
  int32_t merged = 0;
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
    if (i + 1 < n) {
      const int32_t r = lookup(ids[i], ids[i + 1], &merged);
      if (r != kNoRank) heap.push_back((uint64_t(r) << 32) | i);
    }
  }
  const auto cmp = std::greater<uint64_t>();
  std::make_heap(heap.begin(), heap.end(), cmp);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const uint64_t e = heap.back();
    heap.pop_back();
    const int32_t p = int32_t(e & 0xFFFFFFFFu);
    const int32_t q = next[p];
    if (ids[p] < 0 || q < 0) continue;
    const Merge& m = by_rank_[e >> 32];
    if (ids[p] != m.left || ids[q] != m.right) continue;  // stale: a neighbour changed
    ids[p] = m.merged;
    ids[q] = -1;
    next[p] = next[q];
    if (next[p] >= 0) prev[next[p]] = p;
    if (prev[p] >= 0) {
      const int32_t r = lookup(ids[prev[p]], ids[p], &merged);
      if (r != kNoRank) {
        heap.push_back((uint64_t(r) << 32) | uint32_t(prev[p]));
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
    if (next[p] >= 0) {
      const int32_t r = lookup(ids[p], ids[next[p]], &merged);
      if (r != kNoRank) {
        heap.push_back((uint64_t(r) << 32) | uint32_t(p));
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i)
    if (ids[i] >= 0) ids[w++] = ids[i];
  ids.resize(w);
}

}  // namespace r1dist::tok
