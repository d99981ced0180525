#include "r1dist/base/fs.h"
#include "r1dist/report/report.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
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

const RunRecord* base_of(const RunRecord& r, const std::vector<RunRecord>& runs) {
  for (const auto& b : runs)
    if (b.base && &b != &r && (b.model_path == r.model_path || (!b.model_hash.empty() && b.model_hash == r.model_hash)))
      return &b;
  return nullptr;
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

// At most n bytes, cut at a UTF-8 character boundary.
std::string clip(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + " [...]";
}

std::string standard_answer(const RunRecord& r) {
  if (!r.eval || r.eval->generations.empty()) return "";
  return r.eval->generations.front().text;
}

}  // namespace

std::vector<VersionRow> compare_runs(const std::vector<RunRecord>& runs) {
  std::vector<VersionRow> rows;
  for (const auto& r : runs) {
    VersionRow v;
    v.run = &r;
    v.base = r.base ? nullptr : base_of(r, runs);
    v.loss = r.loss();
    v.kl = r.kl();
    v.loss_delta = v.base ? v.loss - v.base->loss() : kNaN;
    v.has_mcq = r.eval && r.eval->has_mcq;
    v.mcq = v.has_mcq ? r.eval->mcq.value : kNaN;
    const bool base_mcq = v.base && v.base->eval && v.base->eval->has_mcq;
    v.mcq_delta = v.has_mcq && base_mcq ? v.mcq - v.base->eval->mcq.value : kNaN;
    v.repeated_4gram_share = r.eval ? r.eval->mean_repeated_4gram_share() : kNaN;
    v.collapsed = r.eval && r.eval->collapsed();
    const double rel = v.base && v.base->loss() > 0 ? v.loss_delta / v.base->loss() : kNaN;
    if (r.base) {
      v.verdict = v.collapsed ? "collapsed" : "base";
      v.why = v.collapsed ? "the untouched model already repeats itself" : "the reference for its size";
    } else if (v.collapsed) {
      v.verdict = "collapsed";
      v.why = "a generation repeats itself (collapse flag)";
    } else if (!v.base) {
      v.verdict = "no base to compare";
      v.why = "no run of " + r.model_path + " with train.steps = 0 in this report";
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

ReportFiles write_report(const std::vector<RunRecord>& runs, const std::string& out_dir, const std::string& title) {
  if (runs.empty()) throw UsageError("report: no runs given");
  ::mkdir(out_dir.c_str(), 0755);
  const auto rows = compare_runs(runs);
  ReportFiles files;
  files.plots = draw_plots(runs, out_dir);
  const std::string rule =
      "Verdict, by the first rule that applies: **collapsed** (a generation repeats itself), **forgot** (MCQ "
      "accuracy more than 5 points below its base, and the base's accuracy above the tuned one's 95% interval), "
      "**worse** (held-out loss more than 1% above its base), "
      "**drifted** (KL(base || tuned) above 0.5 nats/token), **better** (held-out loss more than 1% below its "
      "base), else **close to base**. Each fine-tune is compared with the untouched run of the same model.";

  // ---- Markdown ----
  std::ostringstream md;
  md << "# " << title << "\n\n" << rule << "\n\n";
  md << "| version | model | kind | lr | steps | held-out loss | Δ vs base | KL | MCQ acc | repeated 4-grams | "
        "collapsed | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& v : rows) {
    const auto& r = *v.run;
    md << "| " << r.name << " | " << r.model_path << " | " << (r.base ? "base" : "tuned") << " | "
       << (r.base ? "-" : fmt(r.lr, "%.0e")) << " | " << (r.base ? "-" : std::to_string(r.steps)) << " | "
       << fmt(v.loss) << " | " << signed_fmt(v.loss_delta, "%.4f") << " | " << fmt(v.kl, "%.4g") << " | "
       << (v.has_mcq ? fmt(v.mcq, "%.3f") + " (" + std::to_string(r.eval->mcq.correct) + "/" +
                           std::to_string(r.eval->mcq.total) + ")"
                     : "-")
       << " | " << fmt(v.repeated_4gram_share, "%.3f") << " | " << (v.collapsed ? "**yes**" : "no") << " | **"
       << v.verdict << "**: " << v.why << " |\n";
  }
  md << "\nRuns without an `/eval` group (no `r1dist eval`, eval.suite off) show their last in-training "
        "evaluation and no MCQ or repetition figures.\n\n";
  for (const auto& p : files.plots) {
    const auto name = p.substr(p.find_last_of('/') + 1);
    md << "![" << name << "](" << name << ")\n\n";
  }
  if (files.plots.empty())
    md << "(No plots: gnuplot is not installed; tools/install-deps.sh installs gnuplot-nox.)\n\n";
  md << "## The standard prompt, answered by each version\n\n";
  for (const auto& r : runs) {
    if (!r.eval || r.eval->generations.empty()) continue;
    const auto& g = r.eval->generations.front();
    md << "### " << r.name << "\n\nPrompt: " << g.prompt << "  \n"
       << g.tokens << " tokens" << (g.stopped ? " (ended at EOS)" : " (token limit)")
       << ", reasoning closed: " << (g.think_closed ? "yes" : "no") << ", repeated 4-grams "
       << fmt(g.repetition.repeated_4gram_share, "%.3f") << (g.repetition.collapsed ? ", **collapsed**" : "")
       << "\n\n```text\n"
       << clip(g.text, 3000) << "\n```\n\n";
  }
  files.markdown = out_dir + "/report.md";
  write_file_atomic(files.markdown, md.str());

  // ---- HTML ----
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << html_escape(title)
    << "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
       "td,th{border:1px solid #999;padding:4px 8px;vertical-align:top}pre{white-space:pre-wrap;max-width:40em}"
       ".collapsed{color:#b00;font-weight:bold}</style></head><body>\n";
  h << "<h1>" << html_escape(title) << "</h1>\n<p>" << html_escape(rule) << "</p>\n<table><tr><th>version</th>"
    << "<th>model</th><th>kind</th><th>lr</th><th>steps</th><th>held-out loss</th><th>&Delta; vs base</th><th>KL</th>"
    << "<th>MCQ acc</th><th>repeated 4-grams</th><th>collapsed</th><th>verdict</th></tr>\n";
  for (const auto& v : rows) {
    const auto& r = *v.run;
    h << "<tr><td>" << html_escape(r.name) << "</td><td>" << html_escape(r.model_path) << "</td><td>"
      << (r.base ? "base" : "tuned") << "</td><td>" << (r.base ? "-" : fmt(r.lr, "%.0e")) << "</td><td>"
      << (r.base ? "-" : std::to_string(r.steps)) << "</td><td>" << fmt(v.loss) << "</td><td>"
      << signed_fmt(v.loss_delta, "%.4f") << "</td><td>" << fmt(v.kl, "%.4g") << "</td><td>"
      << (v.has_mcq ? fmt(v.mcq, "%.3f") : "-") << "</td><td>" << fmt(v.repeated_4gram_share, "%.3f") << "</td><td"
      << (v.collapsed ? " class=\"collapsed\">yes" : ">no") << "</td><td><b>" << html_escape(v.verdict)
      << "</b>: " << html_escape(v.why) << "</td></tr>\n";
  }
  h << "</table>\n";
  for (const auto& p : files.plots) {
    const auto name = p.substr(p.find_last_of('/') + 1);
    h << "<p><img src=\"" << html_escape(name) << "\" alt=\"" << html_escape(name) << "\"></p>\n";
  }
  h << "<h2>The standard prompt, side by side</h2>\n<table><tr>";
  for (const auto& r : runs)
    if (!standard_answer(r).empty()) h << "<th>" << html_escape(r.name) << "</th>";
  h << "</tr><tr>";
  for (const auto& r : runs)
    if (!standard_answer(r).empty()) h << "<td><pre>" << html_escape(clip(standard_answer(r), 3000)) << "</pre></td>";
  h << "</tr></table>\n</body></html>\n";
  files.html = out_dir + "/report.html";
  write_file_atomic(files.html, h.str());
  return files;
}

}  // namespace r1dist
