// The full evaluation of one model (a base, or a base with its adapter) on a data file of
// the training format: held-out loss and perplexity, drift from the base (KL and top-1
// agreement, adapters switched off for the base pass), multiple-choice accuracy on the rows
// that carry options, and generations for a prompt list with their repetition measures.
// Used by `r1dist eval` and by a run's end (eval.suite = true).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/loader.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/eval/generate.h"
#include "r1dist/log/time_split.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/quality/eval_summary.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

struct SuiteInputs {
  std::vector<const Example*> held_out;  // loss, and drift when the model has adapters
  bool drift = true;                     // measure drift when the model has adapters
  int64_t kl_rows = 8;                   // the first kl_rows held-out rows measure drift
  int64_t capacity = 2048;               // tokens per packed sequence of loss and drift (eval/drift.h)
  int64_t micro_batch = 1;               // multiple choice: sequences per forward (at least 8)
  std::vector<MultipleChoice> mcq;
  std::vector<std::string> prompts;
  PromptFormat prompt_format = PromptFormat::template_prompt;
  GenerateOptions generation;  // stop_ids and pad_id: the model directory's (generation_stop_ids)
};

// The suite's inputs from a run config: the held-out rows of `data`, the MCQ rows of
// eval.mcq_path (without one: those of the held-out rows; none when no row has options),
// eval.prompts and the generation settings of [eval], which stop at the ids
// generation_stop_ids gathers from model.path and `tok`. Before any model is loaded, refuses
// (check_token_id) a held-out row, multiple-choice option or prompt with an id the model has
// no embedding row for, and warns when a prompt with eval.max_new_tokens goes past
// max_position_embeddings.
SuiteInputs suite_inputs(const Config& cfg, const Dataset& data, const Tokenizer& tok);

// Token ids of a prompt in the given format (BOS first).
std::vector<int64_t> encode_prompt(const Tokenizer& tok, const PromptTemplate& tmpl, PromptFormat format,
                                   const std::string& text);

// Runs everything; `progress` (may be empty) gets one line per stage. `time` (may be null)
// gets each stage's seconds under the parts held_out (loss and drift), multiple_choice and
// generations, which it must name.
EvalSummary run_eval_suite(const Qwen2Model& model, const Tokenizer& tok, const PromptTemplate& tmpl,
                           const SuiteInputs& in, const std::function<void(const std::string&)>& progress = {},
                           TimeSplit* time = nullptr);

// Generated ids as text. A model's vocabulary is often padded beyond its tokenizer's (Qwen2:
// 151,936 rows for 151,665 tokens); an id without a token (which a random or damaged model
// can emit) appears as "[id N]" instead of failing the decode.
std::string decode_generated(const Tokenizer& tok, const std::vector<int64_t>& ids);

// The generated tokens measured: text, reasoning closed, answer length, repetition.
GenerationResult describe_generation(const Tokenizer& tok, const std::string& prompt, const Generation& g);

}  // namespace r1dist
