// The prompt template: named placeholders {question}, {cot}, {response}; "{{" and "}}"
// are literal braces. The built-in default follows the medical-o1 prompt's structure in our
// own words.
// The text up to and including the first "<think>" after {question} is the prompt (what
// inference feeds the model); the rest is the response. EOS is appended by build_dataset.
#pragma once
#include <string>

#include "r1dist/data/loader.h"

namespace r1dist {

struct PromptTemplate {
  std::string text;
  static const std::string& default_text();
  // Throws UsageError on an unknown placeholder or a template without {question}.
  static PromptTemplate parse(const std::string& text);
  // data.template as configured: the text, or the built-in template when it is empty.
  static PromptTemplate configured(const std::string& text) { return parse(text.empty() ? default_text() : text); }
  std::string render(const Row& row) const;  // full training text (without BOS/EOS)
  std::string render_prompt(const std::string& question) const;  // inference form
  // render() split at the prompt/response boundary: prompt + response == render(row), and
  // prompt == render_prompt(row.question).
  struct Parts {
    std::string prompt, response;
  };
  Parts render_parts(const Row& row) const;
};

// The DeepSeek-R1-Distill chat template (its tokenizer_config.json) for one user turn, without the
// BOS that the tokenizer's post-processor adds: "<｜User｜>" + text + "<｜Assistant｜>", then
// "<think>\n" as the newer template revisions do.
std::string chat_prompt(const std::string& user_text);

}  // namespace r1dist
