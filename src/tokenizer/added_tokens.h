// Added tokens (<think>, <｜User｜>, ...): found in the text by a byte trie, leftmost then
// longest (the aho-corasick LeftmostLongest matching HF tokenizers uses), never split.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace r1dist::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false, rstrip = false, normalized = false, special = false;
};

class AddedTokenMatcher {
 public:
  void add(const AddedToken& t);
  bool empty() const { return tokens_.empty(); }

  // Calls text_piece(view) for the text between matches and token(id) for each match, in
  // order. lstrip / rstrip tokens swallow the Unicode whitespace before / after them.
  template <class T, class K>
  void split(std::string_view text, T&& text_piece, K&& token) const {
    size_t pos = 0, from = 0;
    while (true) {
      size_t b, e;
      int32_t idx;
      if (!find(text, from, b, e, idx)) break;
      const AddedToken& t = tokens_[idx];
      size_t tb = b, te = e;
      if (t.lstrip) tb = strip_left(text, pos, b);
      if (t.rstrip) te = strip_right(text, e);
      if (tb > pos) text_piece(text.substr(pos, tb - pos));
      token(t.id);
      pos = from = te;
    }
    if (pos < text.size()) text_piece(text.substr(pos));
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t token = -1;                                    // index into tokens_
  };
  bool find(std::string_view text, size_t from, size_t& b, size_t& e, int32_t& idx) const;
  static size_t strip_left(std::string_view text, size_t floor, size_t b);
  static size_t strip_right(std::string_view text, size_t e);

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace r1dist::tok
