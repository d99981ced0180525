#include "r1dist/base/fs.h"
#include "report/plots.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "r1dist/base/error.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

// A gnuplot single-quoted string: '' stands for one quote.
std::string quoted(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
  return o + "'";
}

// A string column of a gnuplot data file: double-quoted, no double quote or newline inside.
std::string data_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) o += c == '"' ? '\'' : c == '\n' ? ' ' : c;
  return o + "\"";
}

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  char b[64];
  std::snprintf(b, sizeof b, "%.10g", v);
  return b;
}

// Runs `gnuplot script` in dir; false when gnuplot is missing.
bool run_gnuplot(const std::string& dir, const std::string& script) {
  const pid_t pid = fork();
  if (pid < 0) throw Error("report: fork failed");
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) _exit(126);
    execlp("gnuplot", "gnuplot", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return false;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("report: gnuplot failed on " + dir + "/" + script + " (exit status " + std::to_string(status) + ")");
  return true;
}

bool has_terminal(const char* name) {
  // "set terminal pngcairo" fails in a gnuplot built without cairo.
  const std::string cmd = std::string("gnuplot -e 'set terminal ") + name + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// One colour per base model, told apart on screen and in grey print; the runs without a base
// in grey.
const char* group_colour(size_t g, bool no_base) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                  "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  return no_base ? "#7f7f7f" : palette[g % 8];
}

// One colour per run in the curves (Matplotlib's ten, readable on white).
std::string run_colour(size_t i) {
  static const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return palette[i % 10];
}

// The last path component: a model directory's name for legends.
std::string short_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
  // "[a:b]" padded by `pad` of the span on both sides (a span of 0 gets 5% of the value),
  // never below `floor`.
  std::string padded(double pad, double floor = -INFINITY) const {
    const double span = hi > lo ? hi - lo : std::max(std::abs(hi) * 0.05, 1e-3);
    return "[" + num(std::max(floor, lo - pad * span)) + ":" + num(hi + pad * span) + "]";
  }
};

struct Point {
  double x, y, mcq, low, high;  // mcq, low, high: NaN without MCQ figures
  bool base;
  std::string label;
};

// Labels of points within 1.5% of both axes' spans of an earlier point join that point's
// label ("v3, v7") and are left empty, so that labels of runs at one spot do not overprint.
void merge_labels(std::vector<Point>& pts, const Range& x, const Range& y, bool log_x) {
  auto xpos = [&](double v) { return log_x ? std::log10(v) : v; };
  const double xs = std::max(xpos(x.hi) - xpos(x.lo), 1e-12), ys = std::max(y.hi - y.lo, 1e-12);
  for (size_t i = 0; i < pts.size(); ++i) {
    if (pts[i].label.empty()) continue;
    for (size_t j = i + 1; j < pts.size(); ++j)
      if (!pts[j].label.empty() && std::abs(xpos(pts[j].x) - xpos(pts[i].x)) <= 0.015 * xs &&
          std::abs(pts[j].y - pts[i].y) <= 0.015 * ys) {
        pts[i].label += ", " + pts[j].label;
        pts[j].label.clear();
      }
  }
}

}  // namespace

bool draw_gnuplot(const std::string& dir, const std::string& script) { return run_gnuplot(dir, script); }

std::string png_terminal(int width, int height) {
  static const bool cairo = has_terminal("pngcairo");
  const std::string size = " size " + std::to_string(width) + "," + std::to_string(height);
  return std::string("set terminal ") + (cairo ? "pngcairo" + size + " noenhanced font 'sans,11'" : "png" + size + " noenhanced");
}

std::vector<PlotFile> draw_plots(const std::vector<RunRecord>& runs, const std::vector<std::string>& labels,
                                 const std::vector<BaseGroup>& groups, const std::vector<SettingKey>& axes,
                                 const std::string& out_dir) {
  make_dirs(out_dir + "/plot_data");
  const bool cairo = has_terminal("pngcairo");
  auto terminal = [&](int w, int h) {
    const std::string size = " size " + std::to_string(w) + "," + std::to_string(h);
    return std::string("set terminal ") + (cairo ? "pngcairo" + size + " noenhanced font 'sans,11'" : "png" + size + " noenhanced");
  };
  std::ostringstream gp;
  gp << "# Written by r1dist report; redraw with: cd " << out_dir << " && gnuplot plot_data/report.gp\n";
  // Every figure starts from gnuplot's defaults: no arrow, label or log scale of the one before.
  // key: where the legend goes ("below" for a colour per base model, "outside right top" for
  // a list of runs).
  auto start = [&](const std::string& png, int w, int h, const std::string& title, const std::string& key) {
    gp << "\nreset\n" << terminal(w, h) << "\nset output " << quoted(png) << "\nset grid\nset key " << key << "\n"
       << "set title " << quoted(title) << "\n";
  };
  auto write_data = [&](const std::string& name, const std::string& text) {
    write_file_atomic(out_dir + "/plot_data/" + name, text);
    return "plot_data/" + name;
  };
  std::vector<PlotFile> pngs;

  // Each group's colour, legend title and base figures.
  auto colour = [&](size_t g) { return std::string(group_colour(g, groups[g].base == nullptr)); };
  auto group_title = [&](size_t g) {
    return groups[g].base ? short_name(groups[g].model) : std::string("no base in the report");
  };
  auto base_loss = [&](size_t g) { return groups[g].base ? groups[g].base->loss() : NAN; };
  auto base_mcq = [&](size_t g) {
    const auto* b = groups[g].base;
    return b && b->eval && b->eval->has_mcq ? b->eval->mcq.value : NAN;
  };
  const std::string drift_colour = "#444444";

  // ---- (a) held-out loss against KL ----
  {
    Range x, y;
    x.add(0), x.add(kDriftedKl);
    std::vector<std::vector<Point>> points(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const auto* row : groups[g].rows) {
        const double kl = row->run->kl(), loss = row->run->loss();
        if (std::isnan(kl) || std::isnan(loss)) continue;
        x.add(kl), y.add(loss);
        points[g].push_back({kl, loss, 0, 0, 0, row->run->base, labels[size_t(row->run - runs.data())]});
      }
      if (!points[g].empty()) y.add(base_loss(g) * (1 + kWorseLoss));
    }
    std::vector<std::string> series;
    for (size_t g = 0; g < groups.size(); ++g) {
      if (points[g].empty()) continue;
      merge_labels(points[g], x, y, false);
      std::ostringstream d;
      d << "# kl loss is_base label (" << group_title(g) << "; runs at one spot share a label)\n";
      for (const auto& p : points[g])
        d << num(p.x) << " " << num(p.y) << " " << p.base << " " << data_string(p.label) << "\n";
      const auto file = quoted(write_data("loss_vs_kl.g" + std::to_string(g) + ".dat", d.str()));
      const auto lc = " lc rgb " + quoted(colour(g));
      series.push_back(file + " using 1:($3 == 0 ? $2 : NaN) with points pt 7 ps 1.6" + lc + " title " +
                       quoted(group_title(g)));
      series.push_back(file + " using 1:($3 == 1 ? $2 : NaN) with points pt 5 ps 1.6" + lc + " notitle");
      series.push_back(file + " using 1:2:4 with labels offset char 0.8,0.7 left" + " tc rgb " + quoted(colour(g)) +
                       " notitle");
    }
    if (!series.empty()) {
      start("loss_vs_kl.png", 1200, 650,
            "Held-out loss against drift from the base: one point per run (squares: base runs), a colour per base model",
            "below");
      gp << "set xlabel 'KL(base || tuned), nats per token'\nset ylabel 'held-out loss (nats per token)'\n"
         << "set xrange " << x.padded(0.08, 0.0) << "\nset yrange " << y.padded(0.12) << "\n"
         << "set arrow from " << num(kDriftedKl) << ", graph 0 to " << num(kDriftedKl)
         << ", graph 1 nohead dt 2 lw 2 lc rgb " << quoted(drift_colour) << " back\n"
         << "set label " << quoted("drifted: KL > " + num(kDriftedKl)) << " at " << num(kDriftedKl)
         << ", graph 0.04 right offset char -0.5,0 tc rgb " << quoted(drift_colour) << "\n";
      for (size_t g = 0; g < groups.size(); ++g) {
        const double worse = base_loss(g) * (1 + kWorseLoss);
        if (std::isnan(worse)) continue;
        gp << "set arrow from graph 0, first " << num(worse) << " to graph 1, first " << num(worse)
           << " nohead dt 3 lw 2 lc rgb " << quoted(colour(g)) << " back\n"
           << "set label " << quoted("worse than " + group_title(g) + " above this line") << " at graph 0.99, first "
           << num(worse) << " right offset char 0,0.6 tc rgb " << quoted(colour(g)) << "\n";
      }
      gp << "plot ";
      for (size_t i = 0; i < series.size(); ++i) gp << (i ? ", \\\n     " : "") << series[i];
      gp << "\nunset output\n";
      pngs.push_back({out_dir + "/loss_vs_kl.png",
                      "Held-out loss against KL(base ‖ tuned), one point per run (squares: the base runs), a colour "
                      "per base model. Dashed vertical line: the drift threshold (KL " +
                          num(kDriftedKl) + " nats per token); dotted horizontal lines: each base's loss + " +
                          num(100 * kWorseLoss) + "%, above which a run is \"worse\"."});
    }
  }

  // ---- (b) held-out loss and MCQ accuracy against each setting that varies ----
  for (const auto& axis : axes) {
    Range x, yl, ym;
    bool any_mcq = false;
    std::vector<std::string> loss_series, mcq_series;
    std::vector<size_t> with_points;
    std::vector<std::vector<Point>> points(groups.size());
    for (size_t g = 0; g < groups.size(); ++g)
      for (const auto* row : groups[g].rows) {
        const auto& r = *row->run;
        const double v = r.setting(axis.key);
        if (r.base || std::isnan(v) || (axis.log_scale && v <= 0)) continue;
        const bool m = r.eval && r.eval->has_mcq;
        x.add(v), yl.add(r.loss());
        if (m) ym.add(r.eval->mcq.low), ym.add(r.eval->mcq.high);
        points[g].push_back({v, r.loss(), m ? r.eval->mcq.value : NAN, m ? r.eval->mcq.low : NAN,
                             m ? r.eval->mcq.high : NAN, false, labels[size_t(&r - runs.data())]});
      }
    for (size_t g = 0; g < groups.size(); ++g) {
      if (points[g].empty()) continue;
      with_points.push_back(g);
      yl.add(base_loss(g));
      bool any_m = false;
      for (const auto& p : points[g]) any_m = any_m || !std::isnan(p.mcq);
      if (any_m) ym.add(base_mcq(g));
      any_mcq = any_mcq || any_m;
      merge_labels(points[g], x, yl, axis.log_scale);
      std::ostringstream d;
      d << "# " << axis.key << " loss mcq mcq_ci95_low mcq_ci95_high label (" << group_title(g) << ")\n";
      for (const auto& p : points[g])
        d << num(p.x) << " " << num(p.y) << " " << num(p.mcq) << " " << num(p.low) << " " << num(p.high) << " "
          << data_string(p.label) << "\n";
      const auto file = quoted(write_data("setting_" + std::string(axis.key) + ".g" + std::to_string(g) + ".dat", d.str()));
      const auto lc = " lc rgb " + quoted(colour(g));
      loss_series.push_back(file + " using 1:2 with points pt 7 ps 1.5" + lc + " title " + quoted(group_title(g)));
      loss_series.push_back(file + " using 1:2:6 with labels offset char 0.7,0.5 left font ',9' tc rgb " +
                            quoted(colour(g)) + " notitle");
      if (any_m)
        mcq_series.push_back(file + " using 1:3:4:5 with yerrorbars pt 7 ps 1.2 lw 1.5" + lc + " title " +
                             quoted(group_title(g)));
    }
    if (loss_series.empty() || x.empty()) continue;
    const std::string png = "setting_" + std::string(axis.key) + ".png";
    start(png, 1300, any_mcq ? 560 : 600,
          std::string("Held-out loss") + (any_mcq ? " and MCQ accuracy" : "") + " against " + axis.label, "below");
    gp << "unset title\n";
    if (axis.log_scale)
      gp << "set logscale x\nset xrange [" << num(x.lo / 1.6) << ":" << num(x.hi * 1.6) << "]\n";
    else
      gp << "set xrange " << x.padded(0.08, x.lo >= 0 ? 0.0 : -INFINITY) << "\n";
    // Tics at the values the sweep used (when there are few).
    std::set<double> used;
    for (const auto& pts : points)
      for (const auto& p : pts) used.insert(p.x);
    if (used.size() <= 12) {
      gp << "set xtics (";
      for (auto it = used.begin(); it != used.end(); ++it) gp << (it == used.begin() ? "" : ", ") << quoted(num(*it)) << " " << num(*it);
      gp << ")\n";
    }
    gp << "set xlabel " << quoted(axis.label) << "\n";
    auto base_lines = [&](bool mcq) {
      for (size_t g : with_points) {
        const double b = mcq ? base_mcq(g) : base_loss(g);
        if (!std::isnan(b))
          gp << "set arrow from graph 0, first " << num(b) << " to graph 1, first " << num(b)
             << " nohead dt 2 lw 1.5 lc rgb " << quoted(colour(g)) << " back\n";
      }
    };
    if (any_mcq) gp << "set multiplot layout 1,2 title " << quoted(std::string("Held-out loss and MCQ accuracy against ") + axis.label + " (tuned runs; dashed: each base)") << "\n";
    else gp << "set title " << quoted(std::string("Held-out loss against ") + axis.label + " (tuned runs; dashed: each base)") << "\n";
    gp << "set ylabel 'held-out loss (nats per token)'\nset yrange " << yl.padded(0.12) << "\n";
    base_lines(false);
    gp << "plot ";
    for (size_t i = 0; i < loss_series.size(); ++i) gp << (i ? ", \\\n     " : "") << loss_series[i];
    gp << "\n";
    if (any_mcq) {
      gp << "unset arrow\nset ylabel 'MCQ accuracy (95% interval)'\nset yrange " << ym.padded(0.1, 0.0) << "\n";
      base_lines(true);
      gp << "plot ";
      for (size_t i = 0; i < mcq_series.size(); ++i) gp << (i ? ", \\\n     " : "") << mcq_series[i];
      gp << "\nunset multiplot\n";
    }
    gp << "unset output\n";
    pngs.push_back({out_dir + "/" + png,
                    std::string("Held-out loss") + (any_mcq ? " (left) and MCQ accuracy with its 95% interval (right)" : "") +
                        " of each tuned run against " + axis.label + (axis.log_scale ? " (log scale)" : "") +
                        ", a colour per base model; dashed lines: each base's figure."});
  }

  // ---- (c) KL over steps, (d) loss curves ----
  std::vector<std::string> loss_plot, kl_plot;
  Range kl_y, kl_x, loss_x;
  kl_y.add(0), kl_y.add(kDriftedKl), kl_x.add(0), loss_x.add(0);
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    std::ostringstream s, e;
    s << "# step train_loss (" << labels[i] << ")\n";
    for (const auto& x : r.metrics.steps) s << x.step << " " << num(x.loss) << "\n", loss_x.add(double(x.step));
    e << "# step eval_loss kl (" << labels[i] << ")\n";
    for (const auto& x : r.metrics.evals) e << x.step << " " << num(x.eval_loss) << " " << num(x.kl) << "\n";
    const auto steps = quoted(write_data("run" + std::to_string(i) + ".steps.dat", s.str()));
    const auto evals = quoted(write_data("run" + std::to_string(i) + ".evals.dat", e.str()));
    // One line style per run: ten colours, then dash patterns.
    const std::string style = " lc rgb " + quoted(run_colour(i)) + " dt " + std::to_string(i / 10 % 5 + 1);
    if (!r.metrics.steps.empty())
      loss_plot.push_back(steps + " using 1:2 with lines lw 2" + style + " title " + quoted(labels[i]));
    if (!r.metrics.evals.empty()) {
      loss_plot.push_back(evals + " using 1:2 with points pt 6 ps 1.3 lc rgb " + quoted(run_colour(i)) + " notitle");
      if (!r.base) {
        for (const auto& x : r.metrics.evals) kl_y.add(x.kl), kl_x.add(double(x.step));
        kl_plot.push_back(evals + " using 1:3 with linespoints lw 2 pt 7" + style + " title " + quoted(labels[i]));
      }
    }
  }
  if (!kl_plot.empty()) {
    start("kl_curves.png", 1200, 600, "Drift from the base over training steps: KL(base || tuned) of every tuned run",
          "outside right top");
    gp << "set xlabel 'step'\nset ylabel 'KL (nats per token)'\nset xrange " << kl_x.padded(0.03, 0.0)
       << "\nset yrange " << kl_y.padded(0.08, 0.0) << "\n"
       << "set arrow from graph 0, first " << num(kDriftedKl) << " to graph 1, first " << num(kDriftedKl)
       << " nohead dt 2 lw 2 lc rgb " << quoted(drift_colour) << " back\n"
       << "set label " << quoted("drifted: KL > " + num(kDriftedKl)) << " at graph 0.01, first " << num(kDriftedKl)
       << " left offset char 0,0.6 tc rgb " << quoted(drift_colour) << "\nplot ";
    for (size_t i = 0; i < kl_plot.size(); ++i) gp << (i ? ", \\\n     " : "") << kl_plot[i];
    gp << "\nunset output\n";
    pngs.push_back({out_dir + "/kl_curves.png",
                    "KL(base ‖ tuned) at each in-training evaluation of every tuned run; dashed: the drift threshold (" +
                        num(kDriftedKl) + " nats per token)."});
  }
  if (!loss_plot.empty()) {
    start("loss_curves.png", 1200, 600,
          "Loss over training steps: training batches (lines) and held-out rows (circles, same colour)",
          "outside right top");
    gp << "set xlabel 'step'\nset ylabel 'loss (nats per token)'\nset xrange " << loss_x.padded(0.03, 0.0) << "\nplot ";
    for (size_t i = 0; i < loss_plot.size(); ++i) gp << (i ? ", \\\n     " : "") << loss_plot[i];
    gp << "\nunset output\n";
    pngs.push_back({out_dir + "/loss_curves.png",
                    "Loss over training steps: training batches (lines) and the held-out rows at each in-training "
                    "evaluation (circles)."});
  }

  write_file_atomic(out_dir + "/plot_data/report.gp", gp.str());
  if (pngs.empty()) return {};
  if (!run_gnuplot(out_dir, "plot_data/report.gp")) {
    log::warn("report: gnuplot is not installed; no plots (apt-get install gnuplot-nox)");
    return {};
  }
  return pngs;
}

}  // namespace r1dist
