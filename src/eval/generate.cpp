#include "r1dist/eval/generate.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "r1dist/base/error.h"

namespace r1dist {

void SamplingParams::validate() const {
  auto bad = [](const std::string& what) { throw UsageError("sampling: " + what); };
  if (repetition_penalty <= 0 || !std::isfinite(repetition_penalty))
    bad("repetition_penalty must be > 0, got " + std::to_string(repetition_penalty));
  if (!(temperature >= 0) || !std::isfinite(temperature))
    bad("temperature must be >= 0 (0 = greedy), got " + std::to_string(temperature));
  if (argmax()) return;
  if (!(top_p > 0 && top_p <= 1)) bad("top_p must be in (0, 1], got " + std::to_string(top_p));
  if (top_k < 0) bad("top_k must be >= 0 (0 = off), got " + std::to_string(top_k));
}

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// HF RepetitionPenaltyLogitsProcessor: a token already present has its logit divided by the
// penalty when positive, multiplied when negative.
at::Tensor penalize_repeats(const at::Tensor& logits, const at::Tensor& seen, const at::Tensor& seen_mask,
                            double penalty) {
  const int64_t v = logits.size(1);
  // Masked positions point at an extra column V that is cut off afterwards.
  auto idx = seen.to(at::kLong).masked_fill(seen_mask.logical_not(), v);
  auto present = at::zeros({logits.size(0), v + 1}, logits.options().dtype(at::kBool));
  present.scatter_(1, idx, true);
  present = present.slice(1, 0, v);
  auto scaled = at::where(logits < 0, logits * penalty, logits / penalty);
  return at::where(present, scaled, logits);
}

// HF TopKLogitsWarper: everything below the k-th largest logit is removed.
at::Tensor keep_top_k(const at::Tensor& logits, int64_t k) {
  if (k <= 0 || k >= logits.size(1)) return logits;
  auto kth = std::get<0>(logits.topk(k, 1)).slice(1, k - 1, k);
  return logits.masked_fill(logits < kth, kNegInf);
}

// HF TopPLogitsWarper: ascending sort, remove the tokens whose cumulative probability is at
// most 1 - top_p, always keeping the most likely one.
at::Tensor keep_top_p(const at::Tensor& logits, double top_p) {
  if (top_p >= 1.0) return logits;
  auto [sorted, order] = logits.sort(1, /*descending=*/false);
  auto cum = sorted.softmax(1).cumsum(1);
  auto remove = cum <= (1.0 - top_p);
  remove.select(1, remove.size(1) - 1).fill_(false);
  auto remove_orig = at::zeros_like(remove).scatter(1, order, remove);
  return logits.masked_fill(remove_orig, kNegInf);
}

}  // namespace

at::Tensor choose_tokens(const at::Tensor& logits_in, const at::Tensor& seen, const at::Tensor& seen_mask,
                         const SamplingParams& p, const std::vector<double>& uniforms) {
  auto logits = logits_in.to(at::kFloat);
  if (p.repetition_penalty != 1.0) logits = penalize_repeats(logits, seen, seen_mask, p.repetition_penalty);
  if (p.argmax()) return logits.argmax(1);
  logits = logits / p.temperature;
  logits = keep_top_k(logits, p.top_k);
  logits = keep_top_p(logits, p.top_p);
  // Inverse CDF: the first token whose cumulative probability reaches u * total (u in (0, 1],
  // so a token of probability 0 is never chosen).
  check(static_cast<int64_t>(uniforms.size()) == logits.size(0), "choose_tokens: one uniform per row");
  auto cdf = logits.softmax(1).cumsum(1);
  auto u = at::tensor(uniforms, at::TensorOptions().dtype(at::kDouble)).to(cdf.device(), at::kFloat).view({-1, 1});
  auto target = u * cdf.slice(1, cdf.size(1) - 1);
  return at::searchsorted(cdf, target).view({-1}).clamp_max(logits.size(1) - 1);
}

std::vector<Generation> generate(const Qwen2Model& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerateOptions& opt) {
  opt.sampling.validate();
  if (opt.max_new_tokens < 0) throw UsageError("generate: max_new_tokens must be >= 0");
  const int64_t b = static_cast<int64_t>(prompts.size());
  std::vector<Generation> out(static_cast<size_t>(b));
  if (b == 0 || opt.max_new_tokens == 0) return out;
  at::NoGradGuard no_grad;

  // Left-pad to the longest prompt.
  int64_t len = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw UsageError("generate: an empty prompt (it needs at least one token, e.g. BOS)");
    len = std::max<int64_t>(len, static_cast<int64_t>(p.size()));
  }
  std::vector<int64_t> flat(static_cast<size_t>(b * len), opt.pad_id), pads(static_cast<size_t>(b));
  bool padded = false;
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[size_t(r)];
    pads[size_t(r)] = len - static_cast<int64_t>(p.size());
    padded = padded || pads[size_t(r)] > 0;
    std::copy(p.begin(), p.end(), flat.begin() + r * len + pads[size_t(r)]);
  }
  const auto dev = model.device();
  const auto longs = at::TensorOptions().dtype(at::kLong);
  auto seen = at::tensor(flat, longs).view({b, len}).to(dev);
  auto pad_t = padded ? at::tensor(pads, longs).to(dev) : at::Tensor();
  auto seen_mask = padded ? at::arange(len, longs.device(dev)).view({1, -1}) >= pad_t.view({-1, 1})
                          : at::ones({b, len}, longs.dtype(at::kBool).device(dev));

  std::unique_ptr<Decoder> decoder;
  at::Tensor logits;
  if (opt.use_cache) {
    decoder = std::make_unique<Decoder>(model, len + opt.max_new_tokens, opt.cuda_graphs);
    logits = decoder->prefill(seen, pad_t);
  } else {
    logits = model.forward(seen, nullptr, pad_t).select(1, len - 1);
  }

  // The loop queues work without waiting for the device: tokens stay on the device, ended
  // rows are tracked there, and the host looks only every kCheckEvery steps (every step
  // when streaming) whether all rows have ended.
  constexpr int64_t kCheckEvery = 16;
  const bool keep_seen = !opt.use_cache || opt.sampling.repetition_penalty != 1.0;
  const auto stop_t = at::tensor(opt.stop_ids.empty() ? std::vector<int64_t>{-1} : opt.stop_ids, longs).to(dev);
  auto running = at::ones({b}, longs.dtype(at::kBool).device(dev));
  const auto pad_col = at::full({b}, opt.pad_id, longs.device(dev));
  std::vector<bool> running_host(static_cast<size_t>(b), true);  // for streaming only
  std::vector<at::Tensor> steps;
  std::mt19937_64 rng(opt.sampling.seed);
  std::vector<double> uniforms(static_cast<size_t>(b));
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    // (0, 1] from the top 53 bits: the same numbers with every standard library.
    for (auto& u : uniforms) u = 1.0 - double(rng() >> 11) * 0x1.0p-53;
    auto tok = at::where(running, choose_tokens(logits, seen, seen_mask, opt.sampling, uniforms),
                         pad_col);
    steps.push_back(tok);
    running = running.logical_and(at::isin(tok, stop_t).logical_not());
    if (opt.on_token) {
      const auto host = tok.to(at::kCPU);
      for (int64_t r = 0; r < b; ++r) {
        if (!running_host[size_t(r)]) continue;
        const int64_t id = host.data_ptr<int64_t>()[r];
        opt.on_token(r, id);
        if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end())
          running_host[size_t(r)] = false;
      }
    }
    if (step + 1 == opt.max_new_tokens) break;
    if ((opt.on_token || (step + 1) % kCheckEvery == 0) && !running.any().item<bool>()) break;
    const auto next_t = tok.view({b, 1});
    if (keep_seen) {
      seen = at::cat({seen, next_t}, 1);
      seen_mask = at::cat({seen_mask, at::ones({b, 1}, seen_mask.options())}, 1);
    }
    logits = decoder ? decoder->step(tok) : model.forward(seen, nullptr, pad_t).select(1, seen.size(1) - 1);
  }
  // One copy to the host: each row's tokens up to and including its stop id.
  const auto all = at::stack(steps, 1).to(at::kCPU).contiguous();  // (B, steps)
  const int64_t n = all.size(1);
  const auto* p = all.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    auto& g = out[size_t(r)];
    for (int64_t k = 0; k < n; ++k) {
      const int64_t id = p[r * n + k];
      g.tokens.push_back(id);
      if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end()) {
        g.stopped_at_eos = true;
        break;
      }
    }
  }
  return out;
}

}  // namespace r1dist
