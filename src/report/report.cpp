#include "r1dist/base/fs.h"
#include "r1dist/report/report.h"

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "r1dist/base/error.h"
#include "report/plots.h"

namespace r1dist {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string fmt(double v, const char* f = "%.4f") {
  if (std::isnan(v)) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string signed_fmt(double v, const char* f) {
  if (std::isnan(v)) return "-";
  return (v >= 0 ? "+" : "") + fmt(v, f);
}

// The same base model: the same directory, or (a model moved or copied) the same config.json
// hash and weights fingerprint. The hash alone is not enough: models of one shape share it.
bool same_model(const RunRecord& a, const RunRecord& b) {
  return a.model_path == b.model_path ||
         (!a.model_hash.empty() && a.model_hash == b.model_hash && a.weights_fingerprint == b.weights_fingerprint);
}

// Its base: a base run of the same model, one measured on the same held-out rows first.
const RunRecord* base_of(const RunRecord& r, const std::vector<RunRecord>& runs) {
  const RunRecord* any = nullptr;
  for (const auto& b : runs) {
    if (!b.base || &b == &r || !same_model(b, r)) continue;
    if (same_held_out(r, b)) return &b;
    if (!any) any = &b;
  }
  return any;
}

// ---- Markdown ----

// Text in a paragraph or a table cell: the characters Markdown (and a GFM table cell) would
// read as markup are backslash-escaped; a newline becomes a space.
std::string md_text(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto alnum = [&](size_t k) { return k < s.size() && std::isalnum(static_cast<unsigned char>(s[k])); };
    if (c == '\n' || c == '\r') {
      o += ' ';
    } else if (std::string("\\`*[]<>|&~!#").find(c) != std::string::npos) {
      o += '\\', o += c;
    } else if (c == '_' && !(i > 0 && alnum(i - 1) && alnum(i + 1))) {  // "v1_lr" stays as it is
      o += "\\_";
    } else {
      o += c;
    }
  }
  return o;
}

// A path as inline code (a '|' escaped for the table cell it may sit in).
std::string md_code(const std::string& s) {
  if (s.find('`') != std::string::npos || s.find('\n') != std::string::npos) return md_text(s);
  std::string o = "`";
  for (char c : s) o += c == '|' ? std::string("\\|") : std::string(1, c);
  return o + "`";
}

// A fenced block whose fence is longer than any backtick run in the text.
std::string fenced(const std::string& text, const std::string& info = "text") {
  size_t longest = 0, run = 0;
  for (char c : text) run = c == '`' ? run + 1 : 0, longest = std::max(longest, run);
  const std::string fence(std::max<size_t>(3, longest + 1), '`');
  return fence + info + "\n" + text + (text.empty() || text.back() != '\n' ? "\n" : "") + fence + "\n";
}

// At most n bytes, cut at a UTF-8 character boundary.
std::string clip(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + " [...]";
}

std::string file_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// ---- HTML ----

// Standard base64 (RFC 4648) for the data: URIs of the embedded plots: none of the libraries
// the core links (zlib, HDF5, nlohmann/json, cmark-gfm) exports an encoder.
std::string base64(const std::string& in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  o.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    o += abc[v >> 18], o += abc[(v >> 12) & 63], o += abc[(v >> 6) & 63], o += abc[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16;
    o += abc[v >> 18], o += abc[(v >> 12) & 63], o += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    o += abc[v >> 18], o += abc[(v >> 12) & 63], o += abc[(v >> 6) & 63], o += '=';
  }
  return o;
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

// The page around the rendered Markdown: fits a 1400 px window; a wide table scrolls inside
// itself instead of widening the page; long paths and generated text wrap.
const char* kPageStyle =
    "body{font-family:'Noto Sans','Noto Sans CJK SC','DejaVu Sans',sans-serif;font-size:15px;line-height:1.45;"
    "color:#1d1d1d;max-width:1320px;margin:0 auto;padding:16px 24px}"
    "h1{font-size:26px;margin:0.4em 0}h2{font-size:21px;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "h3{font-size:17px;margin-top:1.3em}"
    "table{display:block;overflow-x:auto;max-width:100%;border-collapse:collapse;font-size:13px;margin:0.8em 0}"
    "th,td{border:1px solid #bbb;padding:3px 7px;vertical-align:top;text-align:left}"
    "th{background:#eef1f5}tr:nth-child(even) td{background:#fafafa}"
    "td code{font-size:12px}td:nth-child(2){white-space:nowrap}"
    "code{font-family:'DejaVu Sans Mono',monospace;background:#f3f3f3;padding:0 2px}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;border:1px solid #ddd;padding:8px;"
    "max-width:100%;font-size:13px}pre code{background:none;padding:0}"
    "img{max-width:100%;height:auto}"
    "blockquote{margin:0.8em 0;padding:6px 12px;border-left:4px solid #d9822b;background:#fff6ea}";

// report.html: the Markdown rendered by cmark-gfm (GFM tables), each image that names a file
// in out_dir embedded as a data: URI so the page stands alone.
std::string render_html(const std::string& markdown, const std::string& out_dir, const std::string& title) {
  cmark_gfm_core_extensions_ensure_registered();
  cmark_syntax_extension* table = cmark_find_syntax_extension("table");
  if (!table) throw Error("report: cmark-gfm has no \"table\" extension");
  std::unique_ptr<cmark_parser, void (*)(cmark_parser*)> parser(cmark_parser_new(CMARK_OPT_DEFAULT),
                                                                 cmark_parser_free);
  if (!parser || !cmark_parser_attach_syntax_extension(parser.get(), table))
    throw Error("report: cannot set up the cmark-gfm parser");
  cmark_parser_feed(parser.get(), markdown.data(), markdown.size());
  std::unique_ptr<cmark_node, void (*)(cmark_node*)> doc(cmark_parser_finish(parser.get()), cmark_node_free);
  std::vector<cmark_node*> images;
  {
    std::unique_ptr<cmark_iter, void (*)(cmark_iter*)> it(cmark_iter_new(doc.get()), cmark_iter_free);
    for (cmark_event_type ev; (ev = cmark_iter_next(it.get())) != CMARK_EVENT_DONE;)
      if (ev == CMARK_EVENT_ENTER && cmark_node_get_type(cmark_iter_get_node(it.get())) == CMARK_NODE_IMAGE)
        images.push_back(cmark_iter_get_node(it.get()));
  }
  for (auto* img : images) {
    const std::string url = cmark_node_get_url(img) ? cmark_node_get_url(img) : "";
    if (url.empty() || url.find('/') != std::string::npos || url.find(':') != std::string::npos) continue;
    std::string png;
    if (!try_read_file(out_dir + "/" + url, &png)) continue;
    // cmark's safe mode keeps data:image/png URIs (and drops other data: URIs).
    cmark_node_set_url(img, ("data:image/png;base64," + base64(png)).c_str());
  }
  char* body = cmark_render_html(doc.get(), CMARK_OPT_DEFAULT, cmark_parser_get_syntax_extensions(parser.get()));
  std::string html = std::string("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n") +
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                     html_escape(title) + "</title>\n<style>" + kPageStyle + "</style>\n</head><body>\n" + body +
                     "</body></html>\n";
  cmark_get_default_mem_allocator()->free(body);
  return html;
}

// ---- the report's pieces ----

// The names that two or more runs share, with their directories, in the order given.
std::vector<std::pair<std::string, std::vector<std::string>>> named_alike(const std::vector<RunRecord>& runs) {
  std::vector<std::pair<std::string, std::vector<std::string>>> all;
  for (const auto& r : runs) {
    auto it = std::find_if(all.begin(), all.end(), [&](const auto& e) { return e.first == r.name; });
    if (it == all.end()) it = all.insert(all.end(), {r.name, {}});
    it->second.push_back(r.dir);
  }
  all.erase(std::remove_if(all.begin(), all.end(), [](const auto& e) { return e.second.size() < 2; }), all.end());
  return all;
}

// Runs named alike are labelled in the figures with the shortest tail of their directory that
// tells them apart ("v5 (rerun/v5)").
std::vector<std::string> run_labels(const std::vector<RunRecord>& runs) {
  auto tail = [](const std::string& dir, int parts) {
    size_t end = dir.size();
    while (end > 1 && dir[end - 1] == '/') --end;
    size_t at = end;
    for (int k = 0; k < parts && at != std::string::npos && at > 0; ++k) at = dir.rfind('/', at - 1);
    return at == std::string::npos ? dir.substr(0, end) : dir.substr(at + 1, end - at - 1);
  };
  std::vector<std::string> labels;
  for (const auto& r : runs) labels.push_back(r.name);
  for (const auto& [name, dirs] : named_alike(runs)) {
    int parts = 1;
    for (; parts < 64; ++parts) {
      std::set<std::string> tails;
      for (const auto& d : dirs) tails.insert(tail(d, parts));
      if (tails.size() == dirs.size()) break;
    }
    for (size_t i = 0; i < runs.size(); ++i)
      if (runs[i].name == name) labels[i] = name + " (" + tail(runs[i].dir, parts) + ")";
  }
  return labels;
}

// The settings of setting_keys() whose values differ among the tuned runs.
std::vector<SettingKey> varying_settings(const std::vector<RunRecord>& runs) {
  std::vector<SettingKey> out;
  for (const auto& k : setting_keys()) {
    std::set<double> values;
    bool missing = false;
    for (const auto& r : runs) {
      if (r.base) continue;
      const double v = r.setting(k.key);
      std::isnan(v) ? void(missing = true) : void(values.insert(v));
    }
    if (values.size() + (missing && !values.empty()) > 1) out.push_back(k);
  }
  return out;
}

std::string verdict_rules() {
  char b[2048];
  std::snprintf(b, sizeof b,
                "Each fine-tuned run is compared with the base run of the same model (the same model path, or the "
                "same config.json hash and weights fingerprint; `train.steps = 0`). Its verdict is the first of these rules that applies:\n\n"
                "1. **collapsed**: a generation repeats itself (at least %lld tokens, and a share of at least "
                "%.2g of its 4-grams repeated, or one repeated run covering at least %.2g of it; the generation is "
                "shown below)\n"
                "2. **forgot**: MCQ accuracy more than %.0f points below the base's, and the base's accuracy "
                "above the upper end of the run's 95%% interval\n"
                "3. **worse**: held-out loss more than %.0f%% above the base's\n"
                "4. **drifted**: KL(base ‖ tuned) above %.2g nats per token\n"
                "5. **better**: held-out loss more than %.0f%% below the base's\n"
                "6. **close to base**: none of the above\n\n"
                "A run whose model has no base run in the report gets **no base to compare**. Δ loss is in %% "
                "of the base's held-out loss; Δ MCQ in accuracy points.\n",
                static_cast<long long>(kCollapseMinTokens), kCollapseShare, kCollapseSpan, 100 * kForgotMcqDrop, 100 * kWorseLoss,
                kDriftedKl, 100 * kBetterLoss);
  return b;
}

const char* kRecommendationRule =
    "**Recommended run** of a base model: the tuned run with the lowest held-out loss among those whose verdict "
    "is *better* or *close to base* (it neither collapsed, forgot, got worse nor drifted); **none** when every "
    "fine-tune of that model damaged it: keep the base.";

std::string mcq_cell(const VersionRow& v) {
  if (!v.has_mcq) return "-";
  const auto& m = v.run->eval->mcq;
  return fmt(m.value, "%.3f") + " [" + fmt(m.low, "%.2f") + ", " + fmt(m.high, "%.2f") + "] (" +
         std::to_string(m.correct) + "/" + std::to_string(m.total) + ")";
}

std::string setting_cell(const RunRecord& r, const SettingKey& k) {
  if (r.base) return "-";
  return fmt(r.setting(k.key), "%g");
}

std::string recommendation_line(const BaseGroup& g) {
  if (!g.base) return "No recommendation: these runs have no base run to be compared with.";
  bool tuned = false;
  for (const auto* row : g.rows) tuned = tuned || !row->run->base;
  if (!tuned) return "**Recommended: none**: no fine-tune of this model in the report.";
  if (!g.recommended) return "**Recommended: none**: every fine-tune of this model collapsed, forgot, got worse or drifted: keep the base.";
  const auto& v = *g.recommended;
  return "**Recommended: " + md_text(v.run->name) + "** (" + md_code(v.run->dir) + "): held-out loss " + fmt(v.loss) +
         " (" + signed_fmt(v.loss_delta_pct, "%.2f") + "% vs the base), KL " + fmt(v.kl, "%.4g") +
         (v.has_mcq ? ", MCQ " + mcq_cell(v) : "") + "; verdict: " + v.verdict + ".";
}

}  // namespace

std::string render_report_html(const std::string& markdown, const std::string& out_dir, const std::string& title) {
  return render_html(markdown, out_dir, title);
}

bool VersionRow::acceptable() const {
  return run && !run->base && base && (verdict == "better" || verdict == "close to base");
}

std::vector<VersionRow> compare_runs(const std::vector<RunRecord>& runs) {
  std::vector<VersionRow> rows;
  for (const auto& r : runs) {
    VersionRow v;
    v.run = &r;
    v.base = r.base ? nullptr : base_of(r, runs);
    v.loss = r.loss();
    v.kl = r.kl();
    const bool comparable = v.base && same_held_out(r, *v.base);
    v.loss_delta = comparable ? v.loss - v.base->loss() : kNaN;
    v.loss_delta_pct = comparable && v.base->loss() > 0 ? 100 * v.loss_delta / v.base->loss() : kNaN;
    v.has_mcq = r.eval && r.eval->has_mcq;
    v.mcq = v.has_mcq ? r.eval->mcq.value : kNaN;
    const bool base_mcq = v.base && v.base->eval && v.base->eval->has_mcq;
    v.mcq_delta = comparable && v.has_mcq && base_mcq ? v.mcq - v.base->eval->mcq.value : kNaN;
    v.repeated_4gram_share = r.eval ? r.eval->mean_repeated_4gram_share() : kNaN;
    v.collapsed = r.eval && r.eval->collapsed();
    if (r.eval)
      for (size_t i = 0; i < r.eval->generations.size() && v.collapse_generation < 0; ++i)
        if (r.eval->generations[i].repetition.collapsed) v.collapse_generation = int(i);
    const double rel = v.loss_delta_pct / 100;
    if (r.base) {
      v.verdict = v.collapsed ? "collapsed" : "base";
      v.why = v.collapsed ? "the untouched model already repeats itself" : "the reference for its size";
    } else if (v.collapsed) {
      v.verdict = "collapsed";
      v.why = "generation " + std::to_string(v.collapse_generation + 1) + " repeats itself (collapse flag)";
    } else if (!r.incomplete.empty()) {
      v.verdict = "incomplete";
      v.why = r.incomplete;
    } else if (r.stop_reason.rfind("eval.max_kl", 0) == 0) {
      v.verdict = "drifted";
      v.why = "stopped by the drift guard: " + r.stop_reason;
    } else if (!v.base) {
      v.verdict = "no base to compare";
      v.why = "no run of " + r.model_path + " with train.steps = 0 in this report";
    } else if (!same_held_out(r, *v.base)) {
      v.verdict = "no comparable base";
      v.why = "its held-out rows differ from those of the base " + v.base->dir +
              " (another train.seed or data settings): the losses are not comparable";
    } else if (std::isnan(v.loss)) {
      v.verdict = "not evaluated";
      v.why = "no held-out loss recorded (eval.every_steps = 0 and no final evaluation)";
    } else if (!std::isnan(v.mcq_delta) && v.mcq_delta < -kForgotMcqDrop &&
               r.eval->mcq.high < v.base->eval->mcq.value) {
      v.verdict = "forgot";
      v.why = "MCQ accuracy " + signed_fmt(100 * v.mcq_delta, "%.1f") + " points vs the base";
    } else if (!std::isnan(rel) && rel > kWorseLoss) {
      v.verdict = "worse";
      v.why = "held-out loss " + signed_fmt(100 * rel, "%.1f") + "% vs the base";
    } else if (!std::isnan(v.kl) && v.kl > kDriftedKl) {
      v.verdict = "drifted";
      v.why = "KL " + fmt(v.kl, "%.3f") + " nats/token from the base";
    } else if (!std::isnan(rel) && rel < -kBetterLoss) {
      v.verdict = "better";
      v.why = "held-out loss " + signed_fmt(100 * rel, "%.1f") + "% vs the base, no other damage measured";
    } else {
      v.verdict = "close to base";
      v.why = "held-out loss within 1% of the base";
    }
    rows.push_back(std::move(v));
  }
  return rows;
}

const VersionRow* recommend(const std::vector<const VersionRow*>& rows) {
  const VersionRow* best = nullptr;
  for (const auto* v : rows)
    if (v->acceptable() && !std::isnan(v->loss) && (!best || v->loss < best->loss)) best = v;
  return best;
}

std::vector<BaseGroup> group_by_base(const std::vector<VersionRow>& rows) {
  std::vector<BaseGroup> groups;
  BaseGroup orphans;
  // A base run's group is that of the first base run of its model (two base runs of one
  // model share a group).
  std::map<const RunRecord*, size_t> index;
  auto group_for = [&](const RunRecord* base) {
    if (auto it = index.find(base); it != index.end()) return it->second;
    for (size_t g = 0; g < groups.size(); ++g)
      if (same_model(*groups[g].base, *base)) return index[base] = g;
    groups.push_back(BaseGroup{base, base->model_path, {}, nullptr});
    return index[base] = groups.size() - 1;
  };
  for (const auto& v : rows) {
    if (v.run->base)
      groups[group_for(v.run)].rows.push_back(&v);
    else if (v.base)
      groups[group_for(v.base)].rows.push_back(&v);
    else
      orphans.rows.push_back(&v);
  }
  for (auto& g : groups) {
    std::stable_partition(g.rows.begin(), g.rows.end(), [](const VersionRow* v) { return v->run->base; });
    g.recommended = recommend(g.rows);
  }
  if (!orphans.rows.empty()) groups.push_back(std::move(orphans));
  return groups;
}

std::vector<std::string> duplicate_names(const std::vector<RunRecord>& runs) {
  std::vector<std::string> out;
  for (const auto& [name, dirs] : named_alike(runs)) {
    std::string line = std::to_string(dirs.size()) + " runs are named \"" + name + "\": ";
    for (size_t i = 0; i < dirs.size(); ++i) line += (i ? ", " : "") + dirs[i];
    out.push_back(line);
  }
  return out;
}

ReportFiles write_report(const std::vector<RunRecord>& runs, const std::string& out_dir, const std::string& title,
                         const std::vector<std::string>& not_run) {
  if (runs.empty()) throw UsageError("report: no runs given");
  make_dirs(out_dir);
  const auto rows = compare_runs(runs);
  const auto groups = group_by_base(rows);
  const auto extra = varying_settings(runs);
  ReportFiles files;
  files.warnings = duplicate_names(runs);
  const auto plots = draw_plots(runs, run_labels(runs), groups, extra, out_dir);
  for (const auto& p : plots) files.plots.push_back(p.path);

  std::ostringstream md;
  md << "# " << md_text(title) << "\n\n";
  for (const auto& [name, dirs] : named_alike(runs)) {
    md << "> **Warning:** " << dirs.size() << " runs are named " << md_code(name) << ": ";
    for (size_t i = 0; i < dirs.size(); ++i) md << (i ? ", " : "") << md_code(dirs[i]);
    md << ". The run directory column tells them apart.\n\n";
  }
  size_t bases = 0;
  for (const auto& g : groups) bases += g.base != nullptr;
  md << runs.size() << " runs of " << bases << " base model" << (bases == 1 ? "" : "s") << ".\n\n";

  // The recommendation per base model, first.
  md << "## Recommended run per base model\n\n" << kRecommendationRule << "\n\n";
  for (const auto& g : groups)
    if (g.base) md << "- " << md_code(g.model) << ": " << recommendation_line(g) << "\n";
  md << "\n## Verdicts\n\n" << verdict_rules() << "\n";

  // A table per base model.
  std::string header = "| run | run directory | lr | steps |", rule = "|---|---|---:|---:|";
  std::vector<SettingKey> columns;
  for (const auto& k : extra)
    if (std::string(k.key) != "lr" && std::string(k.key) != "steps") {
      columns.push_back(k);
      header += " " + md_text(k.label) + " |", rule += "---:|";
    }
  header +=
      " held-out loss | Δ loss vs base | KL (nats/token) | MCQ accuracy [95% interval] (correct/items) | Δ MCQ "
      "(points) | repeated 4-grams | collapsed | verdict |";
  rule += "---:|---:|---:|---|---:|---:|---|---|";
  for (const auto& g : groups) {
    if (g.base) {
      md << "## Base model " << md_code(g.model) << "\n\nBase run: " << md_text(g.base->name) << " ("
         << md_code(g.base->dir) << "). " << recommendation_line(g) << "\n\n";
    } else {
      md << "## Runs without a base in this report\n\nNo run of their model with `train.steps = 0` was given, so "
            "they are not judged.\n\n";
    }
    md << header << "\n" << rule << "\n";
    for (const auto* v : g.rows) {
      const auto& r = *v->run;
      md << "| " << md_text(r.name) << " | " << md_code(r.dir) << " | " << (r.base ? "-" : fmt(r.lr, "%g")) << " | "
         << (r.base ? "-" : std::to_string(r.steps)) << " |";
      for (const auto& k : columns) md << " " << setting_cell(r, k) << " |";
      md << " " << fmt(v->loss) << " | " << (r.base ? "-" : signed_fmt(v->loss_delta_pct, "%.2f") + (std::isnan(v->loss_delta_pct) ? "" : "%"))
         << " | " << fmt(v->kl, "%.4g") << " | " << mcq_cell(*v) << " | " << signed_fmt(100 * v->mcq_delta, "%.1f")
         << " | " << fmt(v->repeated_4gram_share, "%.3f") << " | " << (v->collapsed ? "**yes**" : "no") << " | **"
         << md_text(v->verdict) << "**: " << md_text(v->why) << (v == g.recommended ? " (recommended)" : "")
         << " |\n";
    }
    md << "\n";
  }
  md << "Runs without an `/eval` group (no `r1dist eval`, eval.suite off) show their last in-training "
        "evaluation and no MCQ or repetition figures.\n\n";
  // Runs that ended early (eval.patience): metrics.h5 /counters says at which step, /attrs why.
  bool any_stopped = false;
  for (const auto& r : runs) {
    const auto at = r.metrics.counters.find("stopped_at_step");
    const auto why = r.metrics.attrs.find("stop_reason");
    if (at == r.metrics.counters.end()) continue;
    if (!any_stopped) md << "## Runs stopped early\n\n";
    any_stopped = true;
    md << "- " << md_text(r.name) << " (" << md_code(r.dir) << "): stopped after step " << at->second << " of "
       << r.steps << ": " << md_text(why == r.metrics.attrs.end() ? std::string("(no reason recorded)") : why->second)
       << "\n";
  }
  if (any_stopped) md << "\n";

  // What triggered each collapse flag.
  md << "## Collapsed generations\n\n";
  bool any_collapse = false;
  for (const auto& g : groups)
    for (const auto* v : g.rows) {
      if (!v->collapsed || v->collapse_generation < 0) continue;
      any_collapse = true;
      const auto& r = *v->run;
      const auto& gen = r.eval->generations[size_t(v->collapse_generation)];
      md << "### " << md_text(r.name) << " (" << md_code(r.dir) << ")\n\n"
         << "Generation " << v->collapse_generation + 1 << " of " << r.eval->generations.size()
         << " is the first flagged as collapsed: repeated 4-grams " << fmt(gen.repetition.repeated_4gram_share, "%.3f")
         << ", longest repeated run " << gen.repetition.longest_repeat << " of " << gen.repetition.tokens
         << " tokens. The prompt:\n\n"
         << fenced(gen.prompt) << "\nWhat the run generated (at most 1,500 bytes):\n\n"
         << fenced(clip(gen.text, 1500)) << "\n";
    }
  if (!any_collapse) md << "No generation of any run is flagged as collapsed.\n\n";

  md << "## Plots\n\n";
  for (const auto& p : plots) md << p.caption << "\n\n![" << file_name(p.path) << "](" << file_name(p.path) << ")\n\n";
  if (plots.empty()) md << "(No plots: gnuplot is not installed; tools/install-deps.sh installs gnuplot-nox.)\n\n";

  md << "## The standard prompt, answered by each run\n\n";
  for (const auto& g : groups)
    for (const auto* v : g.rows) {
      const auto& r = *v->run;
      if (!r.eval || r.eval->generations.empty()) continue;
      const auto& gen = r.eval->generations.front();
      md << "### " << md_text(r.name) << " (" << md_code(r.dir) << ")\n\nPrompt: " << md_text(gen.prompt) << "  \n"
         << gen.tokens << " tokens" << (gen.stopped_at_eos ? " (ended at EOS)" : " (token limit)")
         << ", reasoning closed: " << (gen.think_closed ? "yes" : "no") << ", repeated 4-grams "
         << fmt(gen.repetition.repeated_4gram_share, "%.3f") << (gen.repetition.collapsed ? ", collapsed" : "")
         << "\n\n"
         << fenced(clip(gen.text, 3000)) << "\n";
    }

  if (!not_run.empty()) {
    md << "## Runs without results\n\n";
    for (const auto& n : not_run) md << "- " << md_text(n) << "\n";
    md << "\n";
  }
  files.markdown = out_dir + "/report.md";
  write_file_atomic(files.markdown, md.str());
  files.html = out_dir + "/report.html";
  write_file_atomic(files.html, render_html(md.str(), out_dir, title));
  return files;
}

}  // namespace r1dist
