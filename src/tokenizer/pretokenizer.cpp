// PCRE2 10.42 (Debian 12) with UTF + UCP + JIT. Its Unicode tables are version 14.0, of
// the age of the Oniguruma 6.9.x that HF tokenizers bundles; \p{L} and \p{N} are the same
// general categories in both. Case-insensitive groups fold with Unicode simple case
// folding in both engines ('S and 'ſ match (?i:'s)).
#include "tokenizer/pretokenizer.h"

#include "r1dist/base/error.h"

namespace r1dist::tok {

namespace {

// Oniguruma's \s with ONIG_SYNTAX_RUBY on UTF-8: U+0009-000D, U+0085 and the
// Space_Separator, Line_Separator and Paragraph_Separator categories (= Unicode
// White_Space).
constexpr const char* kSpaceItems = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";
constexpr const char* kHexItems = "0-9a-fA-F";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string onig_to_pcre2(std::string_view p, const std::string& where) {
  std::string out;
  int depth = 0;  // character-class nesting
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      const bool in_class = depth > 0;
      switch (e) {
        case 's': out += in_class ? std::string(kSpaceItems) : std::string("[") + kSpaceItems + "]"; break;
        case 'h': out += in_class ? std::string(kHexItems) : std::string("[") + kHexItems + "]"; break;
        case 'd': out += "\\p{Nd}"; break;
        case 'D': out += "\\P{Nd}"; break;
        case 'S':
        case 'H':
          if (in_class)
            throw Error(where + ": \\" + std::string(1, e) + " inside a character class is not supported");
          out += std::string("[^") + (e == 'S' ? kSpaceItems : kHexItems) + "]";
          break;
        case 'w': case 'W': case 'b': case 'B':
          throw Error(where + ": \\" + std::string(1, e) +
                      " is not supported (its Oniguruma and PCRE2 meanings differ)");
        default:
          out += '\\';
          out += e;
      }
      continue;
    }
    if (c == '[') {
      if (depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
        const size_t close = p.find(":]", i + 2);
        if (close == std::string_view::npos) throw Error(where + ": unterminated POSIX class");
        out.append(p.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
      if (depth > 0) throw Error(where + ": nested character classes are not supported");
      ++depth;
      out += c;
      // a ']' right after '[' or '[^' is a literal
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && depth > 0) --depth;
    if (c == '&' && depth > 0 && i + 1 < p.size() && p[i + 1] == '&')
      throw Error(where + ": class intersection (&&) is not supported");
    out += c;
  }
  return out;
}

MatchScratch::MatchScratch() {
  md = pcre2_match_data_create(16, nullptr);
  mc = pcre2_match_context_create(nullptr);
  stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  if (!md || !mc || !stack) throw Error("tokenizer: out of memory creating PCRE2 match state");
  pcre2_jit_stack_assign(mc, nullptr, stack);
  // The default limit (10 million backtracking steps) stops `\s*[\r\n]+` on a 10 MB run of
  // spaces, where it backtracks once over the whole run (linear, not catastrophic).
  pcre2_set_match_limit(mc, UINT32_MAX);
}

MatchScratch::~MatchScratch() {
  pcre2_jit_stack_free(stack);
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
}

Regex::Regex(const std::string& pattern, const std::string& where) : where_(where) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &err, &off, nullptr);
  if (!code_)
    throw Error(where + ": regex does not compile at offset " + std::to_string(off) + ": " +
                pcre2_message(err) + " (translated pattern: " + pattern + ")");
  const int rc = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  if (rc != 0) {
    pcre2_code_free(code_);
    throw Error(where + ": PCRE2 JIT compilation failed: " + pcre2_message(rc));
  }
}

Regex::~Regex() { pcre2_code_free(code_); }

bool Regex::find(std::string_view text, size_t start, MatchScratch& s, size_t& begin, size_t& end) const {
  const int rc = pcre2_jit_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                                 0, s.md, s.mc);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw Error(where_ + ": regex match failed: " + pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.md);
  begin = ov[0];
  end = ov[1];
  return true;
}

void PreTokenizer::add_split(const std::string& onig_pattern, const std::string& where) {
  steps_.push_back(std::make_unique<Regex>(onig_to_pcre2(onig_pattern, where), where));
}

}  // namespace r1dist::tok
