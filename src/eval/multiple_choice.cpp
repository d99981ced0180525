#include "r1dist/eval/multiple_choice.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "r1dist/base/error.h"

namespace r1dist {

std::string multiple_choice_context(const PromptTemplate& tmpl, const MultipleChoice& item) {
  return tmpl.render_prompt(item.stem) + "\n</think>\n\n";
}

std::vector<double> mean_continuation_logprob(const Qwen2Model& model, const std::vector<std::vector<int64_t>>& seqs,
                                              const std::vector<int64_t>& starts, int64_t batch, int64_t pad_id) {
  check(seqs.size() == starts.size(), "mean_continuation_logprob: one start per sequence");
  at::NoGradGuard no_grad;
  std::vector<double> out(seqs.size(), 0.0);
  const auto longs = at::TensorOptions().dtype(at::kLong);
  for (size_t g = 0; g < seqs.size(); g += size_t(batch)) {
    const size_t end = std::min(seqs.size(), g + size_t(batch));
    int64_t len = 0;
    for (size_t i = g; i < end; ++i) {
      check(starts[i] >= 1 && starts[i] < int64_t(seqs[i].size()),
            "mean_continuation_logprob: the continuation must follow a non-empty context");
      len = std::max<int64_t>(len, int64_t(seqs[i].size()));
    }
    const int64_t b = int64_t(end - g);
    std::vector<int64_t> ids(size_t(b * len), pad_id), rows, pos, targets, owner;
    for (int64_t r = 0; r < b; ++r) {
      const auto& s = seqs[g + size_t(r)];
      std::copy(s.begin(), s.end(), ids.begin() + r * len);
      for (int64_t t = starts[g + size_t(r)]; t < int64_t(s.size()); ++t) {
        rows.push_back(r);
        pos.push_back(t - 1);  // position t-1 predicts token t
        targets.push_back(s[size_t(t)]);
        owner.push_back(r);
      }
    }
    const auto dev = model.device();
    auto h = model.hidden_states(at::tensor(ids, longs).view({b, len}).to(dev));
    auto sel = h.index({at::tensor(rows, longs).to(dev), at::tensor(pos, longs).to(dev)});  // (N, hidden)
    auto lp = at::log_softmax(model.lm_head(sel).to(at::kFloat), -1)
                  .gather(1, at::tensor(targets, longs).to(dev).view({-1, 1}))
                  .view({-1})
                  .to(at::kCPU, at::kDouble);
    const auto* p = lp.data_ptr<double>();
    std::vector<int64_t> count(size_t(b), 0);
    for (size_t k = 0; k < owner.size(); ++k) {
      out[g + size_t(owner[k])] += p[k];
      ++count[size_t(owner[k])];
    }
    for (int64_t r = 0; r < b; ++r) out[g + size_t(r)] /= double(count[size_t(r)]);
  }
  return out;
}

ChoiceSequences encode_choices(const Tokenizer& tok, const PromptTemplate& tmpl,
                               const std::vector<const MultipleChoice*>& items) {
  ChoiceSequences c;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto ctx = tok.encode(multiple_choice_context(tmpl, *items[i]), /*add_special=*/true);
    for (const auto& [letter, text] : items[i]->options) {
      const auto cont = tok.encode(text);
      check(!cont.empty(), "multiple choice: option " + letter + " encodes to no tokens");
      std::vector<int64_t> s(ctx.begin(), ctx.end());
      s.insert(s.end(), cont.begin(), cont.end());
      c.starts.push_back(int64_t(ctx.size()));
      c.seqs.push_back(std::move(s));
      c.item.push_back(i);
    }
  }
  return c;
}

MultipleChoiceResult score_multiple_choice(const Qwen2Model& model, const Tokenizer& tok, const PromptTemplate& tmpl,
                                           const std::vector<const MultipleChoice*>& items, int64_t batch) {
  const auto choices = encode_choices(tok, tmpl, items);
  const int64_t pad = tok.eos_id().value_or(0);
  const auto scores = mean_continuation_logprob(model, choices.seqs, choices.starts, batch, pad);
  MultipleChoiceResult r;
  size_t k = 0;
  int64_t correct = 0;
  for (const auto* item : items) {
    ChoiceScores c;
    c.answer = item->answer;
    c.scores.assign(scores.begin() + long(k), scores.begin() + long(k + item->options.size()));
    k += item->options.size();
    c.predicted = size_t(std::max_element(c.scores.begin(), c.scores.end()) - c.scores.begin());
    correct += c.predicted == c.answer;
    r.items.push_back(std::move(c));
  }
  r.accuracy = wilson_accuracy(correct, int64_t(items.size()));
  return r;
}

}  // namespace r1dist
