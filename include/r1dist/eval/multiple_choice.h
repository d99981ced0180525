// Multiple-choice accuracy by likelihood. The rule: for each option, the context is the
// run's inference prompt for the item's stem (PromptTemplate::render_prompt, which ends
// with "<think>") followed by an empty, closed reasoning block "\n</think>\n\n", with BOS
// in front; the continuation is the option's text. Context and continuation are tokenized
// separately and concatenated. An option's score is the mean log-probability of its
// continuation tokens (length-normalised log-likelihood); the prediction is the option with
// the highest score (the first on a tie). Accuracy comes with its Wilson 95% interval.
#pragma once
#include <cstdint>
#include <vector>

#include "r1dist/data/loader.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/quality/accuracy.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

struct ChoiceScores {
  std::vector<double> scores;  // per option, mean log-prob per continuation token
  size_t predicted = 0, answer = 0;
};

struct MultipleChoiceResult {
  Accuracy accuracy;
  std::vector<ChoiceScores> items;
};

// The context text of an item (without BOS), by the rule above.
std::string multiple_choice_context(const PromptTemplate& tmpl, const MultipleChoice& item);

// The sequences the rule above scores: per option of each item in order, the context ids (BOS
// first) followed by the option's ids, where the option starts, and the item's index.
struct ChoiceSequences {
  std::vector<std::vector<int64_t>> seqs;
  std::vector<int64_t> starts;
  std::vector<size_t> item;
};
ChoiceSequences encode_choices(const Tokenizer& tok, const PromptTemplate& tmpl,
                               const std::vector<const MultipleChoice*>& items);

// Scores `items`, `batch` sequences (options) per forward.
MultipleChoiceResult score_multiple_choice(const Qwen2Model& model, const Tokenizer& tok, const PromptTemplate& tmpl,
                                           const std::vector<const MultipleChoice*>& items, int64_t batch = 8);

// Mean log-probability of each continuation after its context: seqs[i] = context ids +
// continuation ids, with the continuation starting at starts[i] (>= 1). Right-padded in
// groups of `batch`; only the continuation positions go through the vocabulary projection.
std::vector<double> mean_continuation_logprob(const Qwen2Model& model, const std::vector<std::vector<int64_t>>& seqs,
                                              const std::vector<int64_t>& starts, int64_t batch, int64_t pad_id);

}  // namespace r1dist
