// tokenizer.json (tokenizer/tokenizer.h): the model, merges, added tokens, normalizer and
// pre-tokenizer sections; a tokenizer that loads must encode and decode a short mixed text.
#include "fuzz_input.h"
#include "r1dist/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = r1dist::fuzz::write_input("tokenizer.json", data, size);
  return r1dist::fuzz::refuse_cleanly([&] {
    const auto tok = r1dist::Tokenizer::load(path);
    const auto ids = tok.encode("Hello, 世界! <think>42</think>\n  x");
    (void)tok.decode(ids);
  });
}
