// The report's figures, drawn by gnuplot (Debian's gnuplot-nox; pngcairo, else png): the
// data files and the script are written next to the PNGs (plot_data/), so a figure can be
// redrawn or restyled by hand. Why gnuplot: a well-kept plotter in Debian with no runtime of
// its own to embed; the report only writes text files and runs it.
#pragma once
#include <string>
#include <vector>

#include "r1dist/report/report.h"

namespace r1dist {

struct PlotFile {
  std::string path;     // OUT_DIR/NAME.png
  std::string caption;  // what it shows, one sentence of Markdown
};

// Draws into out_dir, a colour per base model (groups):
//   loss_vs_kl.png      held-out loss against KL, one point per run; the drift threshold
//                       (kDriftedKl) as a vertical line, each base's "worse" threshold as a
//                       horizontal line in its colour
//   setting_KEY.png     held-out loss (and MCQ accuracy with its 95% interval) against each
//                       setting that varies among the tuned runs (`axes`)
//   kl_curves.png       KL over training steps of every tuned run, with the drift threshold
//   loss_curves.png     training and held-out loss over steps
// `labels[i]` names runs[i] in the figures. Returns the PNGs drawn (empty when gnuplot is not
// installed, with a warning).
std::vector<PlotFile> draw_plots(const std::vector<RunRecord>& runs, const std::vector<std::string>& labels,
                                 const std::vector<BaseGroup>& groups, const std::vector<SettingKey>& axes,
                                 const std::string& out_dir);

// The pieces the scaling report (report/scaling.h) shares: gnuplot run on `script` in `dir`
// (false when gnuplot is missing), the PNG terminal line, and report.html's renderer
// (report.cpp: GFM tables, the plots in out_dir embedded).
bool draw_gnuplot(const std::string& dir, const std::string& script);
std::string png_terminal(int width, int height);
std::string render_report_html(const std::string& markdown, const std::string& out_dir, const std::string& title);

}  // namespace r1dist
