// The Split pre-tokenizer: HF tokenizer.json regexes (written for Oniguruma, which HF
// `tokenizers` uses) translated to PCRE2 and JIT-compiled, applied with "Isolated"
// behaviour: every match and every gap between matches is a piece.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace r1dist::tok {

// Rewrites an Oniguruma pattern into a PCRE2 pattern with the same meaning under
// PCRE2_UTF | PCRE2_UCP: \s and \S become Oniguruma's Unicode whitespace class (which
// includes U+0085 and not U+FEFF), \d and \D become \p{Nd}, \h and \H Oniguruma's
// hex-digit class. Throws Error (naming `where`) for constructs it cannot map.
std::string onig_to_pcre2(std::string_view pattern, const std::string& where);

// Per-thread PCRE2 state (match data, JIT stack); one per encoding thread.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* stack = nullptr;
};

class Regex {
 public:
  // `pcre2_pattern` is already translated. `where` names the tokenizer.json field.
  Regex(const std::string& pcre2_pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in text[start..]; returns false if none. Empty matches are
  // reported (begin == end); the caller skips them. `text` must be valid UTF-8.
  bool find(std::string_view text, size_t start, MatchScratch& s, size_t& begin, size_t& end) const;

 private:
  pcre2_code* code_ = nullptr;
  std::string where_;
};

// The sequence of Split steps of a pre-tokenizer (each piece of step k is split by step
// k+1). With no steps the whole text is one piece.
class PreTokenizer {
 public:
  void add_split(const std::string& onig_pattern, const std::string& where);
  bool empty() const { return steps_.empty(); }

  template <class F>
  void split(std::string_view text, MatchScratch& s, F&& emit) const {
    split_step(0, text, s, emit);
  }

 private:
  template <class F>
  void split_step(size_t k, std::string_view text, MatchScratch& s, F& emit) const {
    if (text.empty()) return;
    if (k == steps_.size()) {
      emit(text);
      return;
    }
    const Regex& re = *steps_[k];
    size_t pos = 0, b = 0, e = 0, from = 0;
    while (from <= text.size() && re.find(text, from, s, b, e)) {
      if (b == e) {  // empty match: not a piece; step over one code point
        from = e + 1;
        while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
        continue;
      }
      if (b > pos) split_step(k + 1, text.substr(pos, b - pos), s, emit);
      split_step(k + 1, text.substr(b, e - b), s, emit);
      pos = from = e;
    }
    if (pos < text.size()) split_step(k + 1, text.substr(pos), s, emit);
  }

  std::vector<std::unique_ptr<Regex>> steps_;
};

}  // namespace r1dist::tok
