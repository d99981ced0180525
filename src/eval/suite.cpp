#include "r1dist/eval/suite.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <set>
#include <type_traits>

#include "r1dist/base/error.h"
#include "r1dist/data/packing.h"
#include "r1dist/eval/drift.h"
#include "r1dist/eval/multiple_choice.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/meter.h"
#include "r1dist/quality/accuracy.h"

namespace r1dist {

namespace {

int64_t top_id(const std::vector<int64_t>& ids) { return ids.empty() ? -1 : *std::max_element(ids.begin(), ids.end()); }

// What suite_inputs checks of `in` against the model (suite.h).
void check_against_model(const Config& cfg, const Dataset& data, const Tokenizer& tok, const SuiteInputs& in) {
  const auto& dir = cfg.model.path;
  const auto mc = read_qwen2_config(dir);
  for (const Example* e : in.held_out)
    check_token_id(top_id({e->ids.begin(), e->ids.end()}),
                   "held-out row " + std::to_string(e->row) + " of " + cfg.data.path, dir, mc.vocab_size, tok);
  const auto tmpl = PromptTemplate::for_format(cfg.data.template_text, data.load.format);
  std::vector<const MultipleChoice*> items;
  for (const auto& m : in.mcq) items.push_back(&m);
  const auto choices = encode_choices(tok, tmpl, items);
  for (size_t i = 0; i < choices.seqs.size(); ++i)
    check_token_id(top_id(choices.seqs[i]),
                   "multiple-choice item " + std::to_string(choices.item[i] + 1) + " of " +
                       (cfg.eval.mcq_path.empty() ? cfg.data.path : cfg.eval.mcq_path),
                   dir, mc.vocab_size, tok);
  size_t longest = 0;
  for (size_t i = 0; i < in.prompts.size(); ++i) {
    const auto ids = encode_prompt(tok, tmpl, in.prompt_format, in.prompts[i]);
    check_token_id(top_id(ids), "eval.prompts[" + std::to_string(i) + "]", dir, mc.vocab_size, tok);
    longest = std::max(longest, ids.size());
  }
  if (!in.prompts.empty())
    warn_past_max_positions(mc, dir, int64_t(longest) + in.generation.max_new_tokens,
                            "the longest of eval.prompts (" + std::to_string(longest) +
                                " tokens) with eval.max_new_tokens = " + std::to_string(in.generation.max_new_tokens),
                            "lower eval.max_new_tokens");
}

}  // namespace

SuiteInputs suite_inputs(const Config& cfg, const Dataset& data, const Tokenizer& tok) {
  SuiteInputs in;
  for (const auto& e : data.eval) in.held_out.push_back(&e);
  in.kl_rows = cfg.eval.kl_rows;
  in.capacity = cfg.data.max_seq_len;
  in.micro_batch = cfg.train.micro_batch;
  if (!cfg.eval.mcq_path.empty()) {
    in.mcq = load_mcq_items(cfg.eval.mcq_path, cfg.data.fields);
  } else if (!cfg.data.path.empty()) {
    // From the data file itself: the held-out rows' items, so that every figure covers the
    // same rows (and none that trained).
    std::set<int64_t> held_out;
    for (const auto& e : data.eval) held_out.insert(e.row);
    DataConfig own = cfg.data;
    own.on_bad_row = BadRowPolicy::skip;  // build_dataset already applied data.on_bad_row
    for (auto& row : load_rows(own))
      if (row.mcq && held_out.count(row.index)) in.mcq.push_back(std::move(*row.mcq));
  }
  if (cfg.eval.mcq_rows > 0 && int64_t(in.mcq.size()) > cfg.eval.mcq_rows) in.mcq.resize(size_t(cfg.eval.mcq_rows));
  in.prompts = cfg.eval.prompts;
  in.prompt_format = cfg.eval.prompt_format;
  in.generation.max_new_tokens = cfg.eval.max_new_tokens;
  in.generation.sampling.temperature = cfg.eval.temperature;  // 0 = greedy (SamplingParams::argmax)
  in.generation.sampling.top_p = cfg.eval.top_p;
  in.generation.sampling.seed = uint64_t(cfg.train.seed);
  if (!in.prompts.empty()) {
    in.generation.stop_ids = generation_stop_ids(cfg.model.path, tok);
    if (!in.generation.stop_ids.empty()) in.generation.pad_id = in.generation.stop_ids.front();
  }
  check_against_model(cfg, data, tok, in);
  return in;
}

std::vector<int64_t> encode_prompt(const Tokenizer& tok, const PromptTemplate& tmpl, PromptFormat format,
                                   const std::string& text) {
  const std::string s = format == PromptFormat::chat ? chat_prompt(text) : tmpl.render_prompt(text);
  const auto ids = tok.encode(s, /*add_special=*/true);
  return {ids.begin(), ids.end()};
}

std::string decode_generated(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::string out;
  std::vector<int32_t> run;
  for (int64_t id : ids) {
    if (id >= 0 && id < tok.vocab_size() && !tok.id_to_token(int32_t(id)).empty()) {
      run.push_back(int32_t(id));
      continue;
    }
    out += tok.decode(run) + "[id " + std::to_string(id) + "]";
    run.clear();
  }
  return out + tok.decode(run);
}

GenerationResult describe_generation(const Tokenizer& tok, const std::string& prompt, const Generation& g) {
  GenerationResult r;
  r.prompt = prompt;
  r.tokens = int64_t(g.tokens.size());
  r.stopped_at_eos = g.stopped_at_eos;
  std::vector<int32_t> ids(g.tokens.begin(), g.tokens.end());
  r.text = decode_generated(tok, g.tokens);
  const int32_t close = tok.token_to_id("</think>");
  int64_t close_at = -1;
  for (size_t i = 0; i < ids.size() && close >= 0; ++i)
    if (ids[i] == close) {
      close_at = int64_t(i);
      break;
    }
  if (close_at < 0 && r.text.find("</think>") != std::string::npos) close_at = 0;  // spelled out in pieces
  r.think_closed = close_at >= 0;
  if (close_at >= 0) r.answer_tokens = r.tokens - close_at - 1 - (g.stopped_at_eos ? 1 : 0);
  if (r.answer_tokens < 0) r.answer_tokens = 0;
  // Repetition over the generated tokens without the final stop token.
  std::vector<int64_t> body(g.tokens.begin(), g.tokens.end() - (g.stopped_at_eos && !g.tokens.empty() ? 1 : 0));
  r.repetition = measure_repetition(body);
  r.repetition.tokens = r.tokens;
  return r;
}

EvalSummary run_eval_suite(const Qwen2Model& model, const Tokenizer& tok, const PromptTemplate& tmpl,
                           const SuiteInputs& in, const std::function<void(const std::string&)>& progress,
                           TimeSplit* time) {
  auto t0 = std::chrono::steady_clock::now();
  auto say = [&](const std::string& s) {  // each stage with its own time
    const auto now = std::chrono::steady_clock::now();
    char took[32];
    std::snprintf(took, sizeof took, " (%.1f s)", std::chrono::duration<double>(now - t0).count());
    t0 = now;
    if (progress) progress(s + took);
  };
  // Each stage's seconds into `time`, when given.
  auto timed = [time](std::optional<TimeSplit::Scope>& scope, const char* part) {
    if (time) scope.emplace(*time, part);
  };
  EvalSummary s;
  s.rows = int64_t(in.held_out.size());
  // Each phase in slices, for its progress line (the sums add up across slices).
  auto slice = [](const auto& v, size_t at, size_t n) {
    return std::vector<typename std::decay_t<decltype(v)>::value_type>(v.begin() + long(at),
                                                                       v.begin() + long(std::min(v.size(), at + n)));
  };
  if (!in.held_out.empty()) {
    std::optional<TimeSplit::Scope> scope;
    timed(scope, "held_out");
    // The drift rows (the first kl_rows, when the model has adapters) give their loss and
    // drift from one tuned pass (loss_and_drift, as a run's evaluations); the other rows their
    // loss alone. One packed sequence at a time (eval/drift.h: the same packing), so that the
    // meters move; the sums add up across sequences.
    const bool drift = in.drift && model.lora().attached();
    const size_t n_kl = drift ? std::min(in.held_out.size(), size_t(std::max<int64_t>(0, in.kl_rows))) : 0;
    const std::vector<const Example*> kl(in.held_out.begin(), in.held_out.begin() + long(n_kl)),
        rest(in.held_out.begin() + long(n_kl), in.held_out.end());
    SumCount loss;
    DriftSums d;
    if (!kl.empty()) {
      log::Meter meter("eval: loss and drift", int64_t(kl.size()), "rows");
      for (const auto& part : pack_examples(kl, in.capacity)) {
        BaseStates base;  // one evaluation: the base pass is not kept
        const auto p = loss_and_drift(model, part, in.capacity, base);
        loss.sum += p.loss.sum;
        loss.count += p.loss.count;
        d.kl.sum += p.drift.kl.sum;
        d.kl.count += p.drift.kl.count;
        d.agree += p.drift.agree;
        meter.advance(int64_t(part.size()));
      }
      meter.done();
    }
    if (!rest.empty()) {
      log::Meter meter("eval: held-out loss", int64_t(rest.size()), "rows");
      for (const auto& part : pack_examples(rest, in.capacity)) {
        const auto l = eval_loss(model, part, in.capacity);
        loss.sum += l.sum;
        loss.count += l.count;
        meter.advance(int64_t(part.size()));
      }
      meter.done();
    }
    if (loss.count > 0) {  // build_dataset keeps no row without a loss token
      s.loss = loss.mean();
      s.perplexity = std::exp(s.loss);
    }
    s.loss_tokens = loss.count;
    std::string line = "held-out loss " + std::to_string(s.loss) + " over " + std::to_string(loss.count) +
                       " tokens of " + std::to_string(s.rows) + " rows";
    if (drift) {
      s.has_drift = true;
      s.kl = d.kl.mean();
      s.drift_tokens = d.kl.count;
      s.top1_agreement = d.kl.count > 0 ? double(d.agree) / double(d.kl.count) : 1.0;
      line += "; drift from the base: KL " + std::to_string(s.kl) + " per token, top-1 agreement " +
              std::to_string(s.top1_agreement) + " over " + std::to_string(d.kl.count) + " positions";
    }
    say(line);
  }
  if (!in.mcq.empty()) {
    std::optional<TimeSplit::Scope> scope;
    timed(scope, "multiple_choice");
    std::vector<const MultipleChoice*> items;
    for (const auto& m : in.mcq) items.push_back(&m);
    int64_t correct = 0;
    {
      constexpr size_t kItems = 8;
      log::Meter meter("eval: multiple choice", int64_t(items.size()), "items");
      for (size_t at = 0; at < items.size(); at += kItems) {
        const auto part = slice(items, at, kItems);
        correct += score_multiple_choice(model, tok, tmpl, part, std::max<int64_t>(in.micro_batch, 8)).accuracy.correct;
        meter.advance(int64_t(part.size()));
      }
      meter.done();
    }
    s.has_mcq = true;
    s.mcq = wilson_accuracy(correct, int64_t(items.size()));
    say("multiple choice: " + std::to_string(s.mcq.correct) + " of " + std::to_string(s.mcq.total) + " correct");
  }
  if (!in.prompts.empty()) {
    std::optional<TimeSplit::Scope> scope;
    timed(scope, "generations");
    GenerateOptions opt = in.generation;
    std::vector<std::vector<int64_t>> prompts;
    for (const auto& p : in.prompts) prompts.push_back(encode_prompt(tok, tmpl, in.prompt_format, p));
    log::Meter meter("eval: generations", opt.max_new_tokens * int64_t(prompts.size()), "tokens (at most)");
    opt.on_token = [&](int64_t, int64_t) { meter.advance(); };
    const auto gens = generate(model, prompts, opt);
    meter.done();
    for (size_t i = 0; i < gens.size(); ++i) s.generations.push_back(describe_generation(tok, in.prompts[i], gens[i]));
    say("generations: " + std::to_string(gens.size()) + " prompts" + (s.collapsed() ? ", COLLAPSED" : ""));
  }
  return s;
}

}  // namespace r1dist
