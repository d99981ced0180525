// How repetitive a generated text is, on its token ids: the signs of the collapse the seed
// experiment saw by eye (a 1.5B fine-tune answering with the same tokens over and over).
//
//   repeated_4gram_share  share of the 4-grams that already occurred earlier in the text
//                         (0 = none repeats; a loop of period p scores about 1 - (p+3)/n)
//   longest_repeat        the longest run of tokens that occurs twice (occurrences may
//                         overlap), in tokens
//   distinct_2            distinct bigrams / bigrams (1 = no bigram repeats)
//
// collapsed: a text of at least kCollapseMinTokens tokens whose repeated_4gram_share is at
// least kCollapseShare, or whose longest repeated run covers at least kCollapseSpan of it.
// Ordinary prose and reasoning stay far below (the measured figures are in docs/EVAL.md).
#pragma once
#include <cstdint>
#include <vector>

namespace r1dist {

struct Repetition {
  int64_t tokens = 0;
  double repeated_4gram_share = 0;
  int64_t longest_repeat = 0;
  double distinct_2 = 1;
  bool collapsed = false;
};

constexpr int64_t kCollapseMinTokens = 32;
constexpr double kCollapseShare = 0.5;
constexpr double kCollapseSpan = 0.5;

Repetition measure_repetition(const std::vector<int64_t>& tokens);

}  // namespace r1dist
