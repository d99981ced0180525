// Unicode normalisation (NFC, NFD, NFKC, NFKD) of UTF-8 text through ICU's Normalizer2,
// with a quick check so that already-normalised text (nearly all text, all ASCII) is not
// copied.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace r1dist::tok {

enum class UnicodeForm { NFC, NFD, NFKC, NFKD };

class Normalizer {
 public:
  Normalizer() = default;
  explicit Normalizer(std::vector<UnicodeForm> forms);
  bool empty() const { return forms_.empty(); }
  // Returns `in` itself when it is already normalised, else a view of `buf` holding the
  // normalised text. `in` must be valid UTF-8.
  std::string_view apply(std::string_view in, std::string& buf) const;

 private:
  std::vector<UnicodeForm> forms_;
  std::vector<const void*> icu_;  // const icu::Normalizer2*, one per form
};

}  // namespace r1dist::tok
