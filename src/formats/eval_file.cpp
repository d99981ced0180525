#include "r1dist/formats/eval_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "formats/h5_util.h"
#include "r1dist/base/fs.h"

namespace r1dist {

namespace {

using h5::Handle;

// 2: generations named by their prompt (`<index>-<slug>`, the prompt an attribute), the
// flag `stopped_at_eos`, the interval `mcq_ci95_low/high`. 1 (still read): groups `0`..`n-1`,
// the prompt a dataset, `stopped`, `mcq_low/high`.
constexpr const char* kEvalFormat = "r1dist-eval-2";
constexpr const char* kEvalFormatOne = "r1dist-eval-1";

// The name of generation i: its index (zero-padded, so name order is prompt order) and a
// slug of the prompt: ASCII letters and digits lowercased, other UTF-8 text kept, anything
// else one '-', at most 40 bytes.
std::string generation_name(size_t i, size_t count, const std::string& prompt) {
  std::string index = std::to_string(i);
  const size_t width = std::max<size_t>(2, std::to_string(count > 0 ? count - 1 : 0).size());
  if (index.size() < width) index.insert(0, width - index.size(), '0');
  std::string slug;
  for (size_t k = 0; k < prompt.size();) {
    const unsigned char c = static_cast<unsigned char>(prompt[k]);
    size_t len = 1;
    if (c >= 0x80) len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (k + len > prompt.size()) break;
    std::string piece;
    if (c >= 0x80 && len > 1)
      piece = prompt.substr(k, len);
    else if (std::isalnum(c))
      piece = std::string(1, char(std::tolower(c)));
    else if (!slug.empty() && slug.back() != '-')
      piece = "-";
    if (slug.size() + piece.size() > 40) break;
    slug += piece;
    k += len;
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return index + "-" + (slug.empty() ? std::string("prompt") : slug);
}

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

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
    {"mcq_ci95_low", false, Needs::kMcq, [](const EvalSummary& s) { return s.mcq.low; }},
    {"mcq_ci95_high", false, Needs::kMcq, [](const EvalSummary& s) { return s.mcq.high; }},
    {"collapsed", true, Needs::kNothing, [](const EvalSummary& s) { return double(s.collapsed()); }},
};

void write_group(hid_t f, const EvalSummary& s, const std::string& where) {
  if (H5Lexists(f, "eval", H5P_DEFAULT) > 0) R1DIST_H5(where, H5Ldelete(f, "eval", H5P_DEFAULT));
  Handle g(R1DIST_H5(where, H5Gcreate2(f, "eval", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  h5::write_attr(g, "format", std::string(kEvalFormat), where);
  h5::write_attr(g, "model", s.model, where);
  h5::write_attr(g, "adapter", s.adapter, where);
  h5::write_attr(g, "data", s.data, where);
  h5::write_attr(g, "settings", s.settings, where);
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
  Handle lcpl(R1DIST_H5(where, H5Pcreate(H5P_LINK_CREATE)));
  R1DIST_H5(where, H5Pset_char_encoding(lcpl, H5T_CSET_UTF8));
  for (size_t i = 0; i < s.generations.size(); ++i) {
    const auto& x = s.generations[i];
    const std::string name = generation_name(i, s.generations.size(), x.prompt);
    const std::string w = where + " generation " + name;
    Handle one(R1DIST_H5(w, H5Gcreate2(gens, name.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT)));
    h5::write_attr(one, "prompt", x.prompt, w);
    h5::write_string_dataset(one, "text", x.text, w);
    h5::write_attr(one, "tokens", x.tokens, w);
    h5::write_attr(one, "stopped_at_eos", int64_t(x.stopped_at_eos), w);
    h5::write_attr(one, "think_closed", int64_t(x.think_closed), w);
    h5::write_attr(one, "answer_tokens", x.answer_tokens, w);
    write_repetition(one, x.repetition, w);
  }
}

}  // namespace

std::vector<MetricValue> eval_group_scalars(const EvalSummary& s) {
  std::vector<MetricValue> out;
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
  const std::string format = h5::read_string_attr(g, "format", where);
  if (format != kEvalFormat && format != kEvalFormatOne)
    throw Error(where + ": /eval attribute 'format' is '" + format + "'; this build reads " + kEvalFormatOne + " and " +
                kEvalFormat + "\nHINT: read it with the r1dist version that wrote it, or a newer one");
  const bool one_format = format == kEvalFormatOne;
  EvalSummary s;
  s.model = h5::read_string_attr(g, "model", where);
  s.adapter = h5::read_string_attr(g, "adapter", where);
  s.data = h5::read_string_attr(g, "data", where);
  // Files written before the attribute existed: settings unknown ("").
  if (h5::has_attr(g, "settings")) s.settings = h5::read_string_attr(g, "settings", where);
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
  s.mcq.low = h5::read_double_attr(g, one_format ? "mcq_low" : "mcq_ci95_low", where);
  s.mcq.high = h5::read_double_attr(g, one_format ? "mcq_high" : "mcq_ci95_high", where);
  Handle gens(R1DIST_H5(where, H5Gopen2(g, "generations", H5P_DEFAULT)));
  const int64_t n = h5::read_int_attr(gens, "count", where);
  std::vector<std::string> names;
  if (one_format) {
    for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  } else {
    hsize_t idx = 0;
    R1DIST_H5(where, H5Literate(gens, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &names));
    if (int64_t(names.size()) != n)
      throw Error(where + ": /eval/generations holds " + std::to_string(names.size()) + " groups, its 'count' says " +
                  std::to_string(n) + "\nHINT: run r1dist eval again to rewrite /eval");
  }
  for (const auto& name : names) {
    const std::string w = where + " generation " + name;
    Handle one(R1DIST_H5(w, H5Gopen2(gens, name.c_str(), H5P_DEFAULT)));
    GenerationResult x;
    x.prompt = one_format ? h5::read_string_dataset(one, "prompt", w) : h5::read_string_attr(one, "prompt", w);
    x.text = h5::read_string_dataset(one, "text", w);
    x.tokens = h5::read_int_attr(one, "tokens", w);
    x.stopped_at_eos = h5::read_int_attr(one, one_format ? "stopped" : "stopped_at_eos", w) != 0;
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
