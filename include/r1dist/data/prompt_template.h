// The prompt template: named placeholders {question}, {cot}, {response}; "{{" and "}}"
// are literal braces. The built-in default follows the medical-o1 prompt's structure in our
// own words.
// The text up to and including the first "<think>" after {question} is the prompt (what
// inference feeds the model); the rest is the response. EOS is appended by build_dataset.
//
// data.template = "chat" selects the DeepSeek-R1-Distill chat template instead (chat = true):
// every row is a conversation, rendered as its tokenizer_config.json renders it (docs/DATA.md).
#pragma once
#include <string>
#include <vector>

#include "r1dist/data/loader.h"

namespace r1dist {

// A piece of a rendered row: text (BOS excluded) and whether its tokens carry labels when
// data.train_on_prompt is false (the assistant turns' tokens).
struct Segment {
  std::string text;
  bool label = false;
};

struct PromptTemplate {
  std::string text;   // the prompt template; empty when chat
  bool chat = false;  // the R1 chat template
  static const std::string& default_text();
  static constexpr const char* kChat = "chat";  // the data.template value that selects chat
  // Throws UsageError on an unknown placeholder or a template without {question}; "chat"
  // gives the chat template.
  static PromptTemplate parse(const std::string& text);
  // data.template as configured: "chat", the text, or the built-in template when it is empty.
  static PromptTemplate configured(const std::string& text) { return parse(text.empty() ? default_text() : text); }
  // The template rows of `format` are rendered with: data.template, or, when it is empty, the
  // built-in prompt template for medical_o1 rows (and for automatic: a format not yet known)
  // and the chat template for every other format.
  static PromptTemplate for_format(const std::string& text, DataFormat format);
  // Whether a prompt template places the answer ({response}); training needs it, a prompt for
  // generation does not.
  bool has_response() const;
  std::string render(const Row& row) const;  // full training text (without BOS/EOS)
  std::string render_prompt(const std::string& question) const;  // inference form
  // A training row as segments whose concatenation is the row's text (BOS and, for the prompt
  // template, the EOS id excluded); "" or why the row cannot be rendered (a prompt template
  // renders single-turn rows only: one user turn, then one assistant turn).
  std::string render_segments(const Row& row, std::vector<Segment>& out) const;
  // render() split at the prompt/response boundary: prompt + response == render(row), and
  // prompt == render_prompt(row.question).
  struct Parts {
    std::string prompt, response;
  };
  Parts render_parts(const Row& row) const;
};

// The DeepSeek-R1-Distill chat template (its tokenizer_config.json) for one user turn, without the
// BOS that the tokenizer's post-processor adds: "<｜User｜>" + text + "<｜Assistant｜>", then
// "<think>\n" as the newer template revisions do (add_generation_prompt).
std::string chat_prompt(const std::string& user_text);

// A conversation through the R1-Distill chat template, BOS excluded, for training:
//   the last system turn's content (the template keeps one system prompt: the last), then per
//   turn "<｜User｜>" + content, or "<｜Assistant｜>" + body + "<｜end▁of▁sentence｜>";
//   the body of the last assistant turn keeps its reasoning: "<think>\n" + reasoning +
//   "\n</think>\n\n" + answer when it has reasoning (Turn::reasoning, or a "</think>" in its
//   content: the reasoning is what comes before it, without a leading "<think>"), else the
//   content as it is; an earlier assistant turn's body is its content after the last
//   "</think>", as the template renders the history.
// Segments: label = true for each assistant body and its end-of-sentence token.
std::vector<Segment> render_chat(const std::vector<Turn>& turns);

// An assistant turn's reasoning and answer: split at the last "</think>" of its content
// (a leading "<think>" dropped, both trimmed of surrounding whitespace) or Turn::reasoning;
// has_think when either gave a think block.
struct ThinkSplit {
  bool has_think = false;
  std::string reasoning, answer;
};
ThinkSplit split_think(const Turn& t);

}  // namespace r1dist
