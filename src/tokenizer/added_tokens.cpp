#include "tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <cstring>

#include "tokenizer/utf8.h"

namespace r1dist::tok {

void AddedTokenMatcher::add(const AddedToken& t) {
  if (t.content.empty()) return;
  tokens_.push_back(t);
  int32_t node = 0;
  for (unsigned char c : t.content) {
    auto& nx = trie_[node].next;
    auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(c, int32_t(-1)));
    if (it != nx.end() && it->first == c) {
      node = it->second;
    } else {
      const int32_t child = int32_t(trie_.size());
      nx.insert(it, {c, child});
      trie_.emplace_back();  // invalidates nx; not used after this
      node = child;
    }
  }
  // The same content twice: the later entry wins, as when HF rebuilds its map.
  trie_[node].token = int32_t(tokens_.size() - 1);
  first_byte_[static_cast<unsigned char>(t.content[0])] = true;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, size_t& b, size_t& e, int32_t& idx) const {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = from; i < n; ++i) {
    if (!first_byte_[p[i]]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      const auto& nx = trie_[node].next;
      auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(p[j], int32_t(-1)));
      if (it == nx.end() || it->first != p[j]) break;
      node = it->second;
      if (trie_[node].token >= 0) {
        best = trie_[node].token;
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      b = i;
      e = best_end;
      idx = best;
      return true;
    }
  }
  return false;
}

size_t AddedTokenMatcher::strip_left(std::string_view text, size_t floor, size_t b) {
  while (b > floor) {
    const size_t s = utf8_prev(text, b);
    size_t k = s;
    if (!u_isUWhiteSpace(UChar32(utf8_next(text, k)))) break;
    b = s;
  }
  return b;
}

size_t AddedTokenMatcher::strip_right(std::string_view text, size_t e) {
  while (e < text.size()) {
    size_t k = e;
    if (!u_isUWhiteSpace(UChar32(utf8_next(text, k)))) break;
    e = k;
  }
  return e;
}

}  // namespace r1dist::tok
