#include "r1dist/base/fs.h"
#include "report/plots.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

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

void write(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

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

}  // namespace

std::vector<std::string> draw_plots(const std::vector<RunRecord>& runs, const std::string& out_dir) {
  const std::string data_dir = out_dir + "/plot_data";
  ::mkdir(data_dir.c_str(), 0755);
  const std::string term =
      has_terminal("pngcairo") ? "pngcairo size 1200,600 noenhanced font 'sans,10'" : "png size 1200,600 noenhanced";
  std::ostringstream gp;
  gp << "# Written by r1dist report; redraw with: cd " << out_dir << " && gnuplot plot_data/report.gp\n"
     << "set terminal " << term << "\nset key outside right top\nset grid\n";

  // Per-run data files.
  std::vector<std::string> loss_plot, eval_plot, kl_plot;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const std::string steps = "plot_data/run" + std::to_string(i) + ".steps.dat";
    const std::string evals = "plot_data/run" + std::to_string(i) + ".evals.dat";
    std::ostringstream s, e;
    s << "# step train_loss (" << r.name << ")\n";
    for (const auto& x : r.metrics.steps) s << x.step << " " << x.loss << "\n";
    e << "# step eval_loss kl (" << r.name << ")\n";
    for (const auto& x : r.metrics.evals) e << x.step << " " << x.eval_loss << " " << x.kl << "\n";
    write(out_dir + "/" + steps, s.str());
    write(out_dir + "/" + evals, e.str());
    // One colour per run in every figure: training loss solid, held-out loss dashed.
    const std::string lc = " lc " + std::to_string(i + 1);
    if (!r.metrics.steps.empty())
      loss_plot.push_back(quoted(steps) + " using 1:2 with lines lw 2" + lc + " title " + quoted(r.name));
    if (!r.metrics.evals.empty()) {
      eval_plot.push_back(quoted(evals) + " using 1:2 with linespoints dt 2 pt 7" + lc + " title " +
                          quoted(r.name + " (held-out)"));
      if (!r.base)
        kl_plot.push_back(quoted(evals) + " using 1:3 with linespoints lw 2 pt 7" + lc + " title " + quoted(r.name));
    }
  }
  std::vector<std::string> pngs;
  auto plot = [&](const std::string& png, const std::string& title, const std::string& xlabel,
                  const std::string& ylabel, const std::vector<std::string>& series) {
    if (series.empty()) return;
    gp << "set output " << quoted(png) << "\nset title " << quoted(title) << "\nset xlabel " << quoted(xlabel)
       << "\nset ylabel " << quoted(ylabel) << "\nplot ";
    for (size_t i = 0; i < series.size(); ++i) gp << (i ? ", \\\n     " : "") << series[i];
    gp << "\nunset output\n";
    pngs.push_back(out_dir + "/" + png);
  };
  auto both = loss_plot;
  both.insert(both.end(), eval_plot.begin(), eval_plot.end());
  plot("loss_curves.png", "Loss over training steps: training batches (solid) and held-out rows (dashed, points)",
       "step", "loss (nats per token)", both);
  plot("kl_curves.png", "Drift from the base model over training steps: KL(base || tuned)", "step",
       "KL (nats per token)", kl_plot);

  // Accuracy (or held-out loss) against drift, one labelled point per version.
  bool any_mcq = false;
  for (const auto& r : runs) any_mcq = any_mcq || (r.eval && r.eval->has_mcq);
  // Labels: each run's first word (the version, e.g. "v5"); runs within 1% of the axes'
  // spans of each other share one point and one label ("v3, v7").
  std::vector<std::pair<std::pair<double, double>, std::string>> raw, points_at;
  for (const auto& r : runs) {
    const double kl = r.kl();
    const double y = any_mcq ? (r.eval && r.eval->has_mcq ? r.eval->mcq.value : NAN) : r.loss();
    if (std::isnan(kl) || std::isnan(y)) continue;
    std::string label = r.name.substr(0, r.name.find(' '));
    for (auto& c : label)
      if (c == '"') c = '\'';
    raw.push_back({{kl, y}, label});
  }
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& [xy, l] : raw) {
    x0 = std::min(x0, xy.first), x1 = std::max(x1, xy.first);
    y0 = std::min(y0, xy.second), y1 = std::max(y1, xy.second);
  }
  const double xs = x1 > x0 ? x1 - x0 : 1.0, ys = y1 > y0 ? y1 - y0 : 1.0;
  for (const auto& [xy, label] : raw) {
    bool merged = false;
    for (auto& [at, l] : points_at)
      if (!merged && std::abs(at.first - xy.first) <= 0.01 * xs && std::abs(at.second - xy.second) <= 0.01 * ys) {
        l += ", " + label;
        merged = true;
      }
    if (!merged) points_at.push_back({xy, label});
  }
  std::ostringstream sc;
  sc << "# kl value label (versions on the same point share a label)\n";
  for (const auto& [xy, l] : points_at) sc << xy.first << " " << xy.second << " \"" << l << "\"\n";
  const size_t points = points_at.size();
  write(out_dir + "/plot_data/scatter.dat", sc.str());
  if (points > 0) {
    const std::string y = any_mcq ? "multiple-choice accuracy" : "held-out loss (nats per token)";
    gp << "set output 'accuracy_vs_drift.png'\nset title "
       << quoted((any_mcq ? std::string("Accuracy") : std::string("Held-out loss")) +
                 " against drift from the base (versions at the same spot share a point)")
       << "\nset xlabel 'KL(base || tuned), nats per token'\nset ylabel " << quoted(y)
       << "\nset offsets graph 0.05, graph 0.25, graph 0.1, graph 0.1\nunset key\n"
       << "plot 'plot_data/scatter.dat' using 1:2 with points pt 7 ps 1.5, "
          "'' using 1:2:3 with labels offset char 1,1 left\nunset output\n";
    pngs.push_back(out_dir + "/accuracy_vs_drift.png");
  }
  write(out_dir + "/plot_data/report.gp", gp.str());
  if (!run_gnuplot(out_dir, "plot_data/report.gp")) {
    log::warn("report: gnuplot is not installed; no plots (apt-get install gnuplot-nox)");
    return {};
  }
  return pngs;
}

}  // namespace r1dist
