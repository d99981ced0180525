// The report's figures, drawn by gnuplot (Debian's gnuplot-nox; pngcairo, else png): the
// data files and the script are written next to the PNGs, so a figure can be redrawn or
// restyled by hand. Why gnuplot: a well-kept plotter in Debian with no runtime of its own to
// embed; the report only writes text files and runs it.
#pragma once
#include <string>
#include <vector>

#include "r1dist/report/run_record.h"

namespace r1dist {

// Draws loss_curves.png, kl_curves.png and accuracy_vs_drift.png into out_dir; returns the
// PNG paths (empty when gnuplot is not installed, with a warning).
std::vector<std::string> draw_plots(const std::vector<RunRecord>& runs, const std::string& out_dir);

}  // namespace r1dist
