#include "r1dist/formats/eval_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "formats/h5_util.h"
#include "r1dist/base/fs.h"

namespace r1dist {

namespace {

using h5::Handle;

void write_repetition(hid_t g, const Repetition& r, const std::string& w) {
  h5::write_attr(g, "repeated_4gram_share", r.repeated_4gram_share, w);
  h5::write_attr(g, "longest_repeat", r.longest_repeat, w);
  h5::write_attr(g, "distinct_2", r.distinct_2, w);
  h5::write_attr(g, "collapsed", int64_t(r.collapsed), w);
}

// The numeric attributes of /eval: name, type, what they need to be measured, value. The
// one list that the file and eval_group_scalars share.
enum class Needs { kNothing, kDrift, kMcq };
struct NumberAttr {
  const char* name;
  bool integer;
  Needs needs;
  double (*value)(const EvalSummary&);
};
const NumberAttr kNumbers[] = {
    {"rows", true, Needs::kNothing, [](const EvalSummary& s) { return double(s.rows); }},
    {"loss", false, Needs::kNothing, [](const EvalSummary& s) { return s.loss; }},
    {"perplexity", false, Needs::kNothing, [](const EvalSummary& s) { return s.perplexity; }},
    {"loss_tokens", true, Needs::kNothing, [](const EvalSummary& s) { return double(s.loss_tokens); }},
    {"kl", false, Needs::kDrift, [](const EvalSummary& s) { return s.kl; }},
    {"top1_agreement", false, Needs::kDrift, [](const EvalSummary& s) { return s.top1_agreement; }},
    {"drift_tokens", true, Needs::kDrift, [](const EvalSummary& s) { return double(s.drift_tokens); }},
    {"mcq_correct", true, Needs::kMcq, [](const EvalSummary& s) { return double(s.mcq.correct); }},
    {"mcq_total", true, Needs::kMcq, [](const EvalSummary& s) { return double(s.mcq.total); }},
    {"mcq_accuracy", false, Needs::kMcq, [](const EvalSummary& s) { return s.mcq.value; }},
    {"mcq_low", false, Needs::kMcq, [](const EvalSummary& s) { return s.mcq.low; }},
    {"mcq_high", false, Needs::kMcq, [](const EvalSummary& s) { return s.mcq.high; }},
    {"collapsed", true, Needs::kNothing, [](const EvalSummary& s) { return double(s.collapsed()); }},
};

void write_group(hid_t f, const EvalSummary& s, const std::string& where) {
  if (H5Lexists(f, "eval", H5P_DEFAULT) > 0) R1DIST_H5(where, H5Ldelete(f, "eval", H5P_DEFAULT));
  Handle g(R1DIST_H5(where, H5Gcreate2(f, "eval", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  h5::write_attr(g, "format", std::string("r1dist-eval-1"), where);
  h5::write_attr(g, "model", s.model, where);
  h5::write_attr(g, "adapter", s.adapter, where);
  h5::write_attr(g, "data", s.data, where);
  h5::write_attr(g, "has_drift", int64_t(s.has_drift), where);
  h5::write_attr(g, "has_mcq", int64_t(s.has_mcq), where);
  for (const auto& a : kNumbers) {
    if (a.integer)
      h5::write_attr(g, a.name, int64_t(a.value(s)), where);
    else
      h5::write_attr(g, a.name, a.value(s), where);
  }
  Handle gens(R1DIST_H5(where, H5Gcreate2(g, "generations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  h5::write_attr(gens, "count", int64_t(s.generations.size()), where);
  for (size_t i = 0; i < s.generations.size(); ++i) {
    const auto& x = s.generations[i];
    const std::string w = where + " generation " + std::to_string(i);
    Handle one(R1DIST_H5(w, H5Gcreate2(gens, std::to_string(i).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
    h5::write_string_dataset(one, "prompt", x.prompt, w);
    h5::write_string_dataset(one, "text", x.text, w);
    h5::write_attr(one, "tokens", x.tokens, w);
    h5::write_attr(one, "stopped", int64_t(x.stopped), w);
    h5::write_attr(one, "think_closed", int64_t(x.think_closed), w);
    h5::write_attr(one, "answer_tokens", x.answer_tokens, w);
    write_repetition(one, x.repetition, w);
  }
}

}  // namespace

std::vector<MetricColumn> eval_group_scalars(const EvalSummary& s) {
  std::vector<MetricColumn> out;
  for (const auto& a : kNumbers)
    if (a.needs == Needs::kNothing || (a.needs == Needs::kDrift && s.has_drift) || (a.needs == Needs::kMcq && s.has_mcq))
      out.push_back({a.name, a.value(s)});
  return out;
}

void write_eval_group(const std::string& path, const EvalSummary& s) {
  h5::quiet();
  const std::string where = "eval results " + path;
  // Edited in memory and written atomically (h5_util.h): the file on disk is the old one
  // or the new one; a metrics.h5 whose SWMR writer was killed opens all the same.
  std::string old;
  Handle f = try_read_file(path, &old) ? h5::open_in_memory(old, path, where)
                                       : h5::create_in_memory(path, 1 << 20, where);
  write_group(f, s, where);
  h5::write_image(f, path, where);
}

std::optional<EvalSummary> read_eval_group(const std::string& path) {
  h5::quiet();
  const std::string where = "eval results " + path;
  hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
  if (fid < 0) fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) h5::fail(where, "H5Fopen");
  Handle f(fid);
  if (H5Lexists(f, "eval", H5P_DEFAULT) <= 0) return std::nullopt;
  Handle g(R1DIST_H5(where, H5Gopen2(f, "eval", H5P_DEFAULT)));
  EvalSummary s;
  s.model = h5::read_string_attr(g, "model", where);
  s.adapter = h5::read_string_attr(g, "adapter", where);
  s.data = h5::read_string_attr(g, "data", where);
  s.rows = h5::read_int_attr(g, "rows", where);
  s.loss = h5::read_double_attr(g, "loss", where);
  s.perplexity = h5::read_double_attr(g, "perplexity", where);
  s.loss_tokens = h5::read_int_attr(g, "loss_tokens", where);
  s.has_drift = h5::read_int_attr(g, "has_drift", where) != 0;
  s.kl = h5::read_double_attr(g, "kl", where);
  s.top1_agreement = h5::read_double_attr(g, "top1_agreement", where);
  s.drift_tokens = h5::read_int_attr(g, "drift_tokens", where);
  s.has_mcq = h5::read_int_attr(g, "has_mcq", where) != 0;
  s.mcq.correct = h5::read_int_attr(g, "mcq_correct", where);
  s.mcq.total = h5::read_int_attr(g, "mcq_total", where);
  s.mcq.value = h5::read_double_attr(g, "mcq_accuracy", where);
  s.mcq.low = h5::read_double_attr(g, "mcq_low", where);
  s.mcq.high = h5::read_double_attr(g, "mcq_high", where);
  Handle gens(R1DIST_H5(where, H5Gopen2(g, "generations", H5P_DEFAULT)));
  const int64_t n = h5::read_int_attr(gens, "count", where);
  for (int64_t i = 0; i < n; ++i) {
    const std::string w = where + " generation " + std::to_string(i);
    Handle one(R1DIST_H5(w, H5Gopen2(gens, std::to_string(i).c_str(), H5P_DEFAULT)));
    GenerationResult x;
    x.prompt = h5::read_string_dataset(one, "prompt", w);
    x.text = h5::read_string_dataset(one, "text", w);
    x.tokens = h5::read_int_attr(one, "tokens", w);
    x.stopped = h5::read_int_attr(one, "stopped", w) != 0;
    x.think_closed = h5::read_int_attr(one, "think_closed", w) != 0;
    x.answer_tokens = h5::read_int_attr(one, "answer_tokens", w);
    x.repetition.tokens = x.tokens;
    x.repetition.repeated_4gram_share = h5::read_double_attr(one, "repeated_4gram_share", w);
    x.repetition.longest_repeat = h5::read_int_attr(one, "longest_repeat", w);
    x.repetition.distinct_2 = h5::read_double_attr(one, "distinct_2", w);
    x.repetition.collapsed = h5::read_int_attr(one, "collapsed", w) != 0;
    s.generations.push_back(std::move(x));
  }
  return s;
}

}  // namespace r1dist
