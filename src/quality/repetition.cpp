#include "r1dist/quality/repetition.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

namespace r1dist {

namespace {

// Longest substring occurring at two different start positions: the longest common prefix
// of two suffixes, by dynamic programming over (i, j), i < j, one row at a time. O(n^2) time,
// O(n) memory; generations are at most a few thousand tokens.
int64_t longest_repeat(const std::vector<int64_t>& t) {
  const size_t n = t.size();
  std::vector<int64_t> prev(n + 1, 0), cur(n + 1, 0);
  int64_t best = 0;
  // cur[j] = length of the common run ending at i-1 and j-1 (i < j).
  for (size_t i = 1; i <= n; ++i) {
    std::fill(cur.begin(), cur.end(), 0);
    for (size_t j = i + 1; j <= n; ++j) {
      if (t[i - 1] == t[j - 1]) {
        cur[j] = prev[j - 1] + 1;
        best = std::max(best, cur[j]);
      }
    }
    std::swap(prev, cur);
  }
  return best;
}

}  // namespace

Repetition measure_repetition(const std::vector<int64_t>& t) {
  Repetition r;
  const int64_t n = static_cast<int64_t>(t.size());
  r.tokens = n;
  if (n >= 4) {
    std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> seen;
    int64_t repeats = 0;
    for (int64_t i = 0; i + 4 <= n; ++i)
      if (!seen.emplace(t[size_t(i)], t[size_t(i + 1)], t[size_t(i + 2)], t[size_t(i + 3)]).second) ++repeats;
    r.repeated_4gram_share = double(repeats) / double(n - 3);
  }
  if (n >= 2) {
    std::set<std::pair<int64_t, int64_t>> bigrams;
    for (int64_t i = 0; i + 2 <= n; ++i) bigrams.emplace(t[size_t(i)], t[size_t(i + 1)]);
    r.distinct_2 = double(bigrams.size()) / double(n - 1);
  }
  r.longest_repeat = longest_repeat(t);
  r.collapsed = n >= kCollapseMinTokens &&
                (r.repeated_4gram_share >= kCollapseShare || double(r.longest_repeat) >= kCollapseSpan * double(n));
  return r;
}

}  // namespace r1dist
