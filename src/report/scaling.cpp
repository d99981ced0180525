#include "r1dist/report/scaling.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "report/plots.h"

namespace r1dist {

const std::vector<int>& projected_gpu_counts() {
  static const std::vector<int> counts = {8, 16, 64, 256};
  return counts;
}

double ring_allreduce_seconds(double bytes, int ranks, double busbw_gbps, double latency_us) {
  if (ranks <= 1) return 0;
  const double n = ranks;
  return 2 * (n - 1) / n * bytes / (busbw_gbps * 1e9) + 2 * (n - 1) * latency_us * 1e-6;
}

double projected_efficiency(double step_s, double comm_s) { return step_s / (step_s + comm_s); }

double bus_bandwidth_gbps(double bytes, double seconds, int ranks) {
  if (ranks <= 1 || seconds <= 0) return NAN;
  return bytes / seconds * 2.0 * (ranks - 1) / ranks / 1e9;
}

namespace {

using nlohmann::json;

double number(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string pct(double v) { return std::isnan(v) ? "n/a" : fixed(100 * v, 1) + "%"; }

}  // namespace

ScalingFiles write_scaling_report(const std::string& dir, const std::string& out_dir, const std::string& title) {
  // The newest line of each kind per rank count (a rerun replaces a point).
  std::map<int, json> train, allreduce;
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
  if (ec) throw UsageError("report --scaling: cannot list " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::istringstream in(read_file(f));
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      if (line.empty() || line[0] != '{') continue;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("bench") || !j.contains("ranks")) continue;
      const int ranks = j["ranks"].get<int>();
      if (j["bench"] == "train") train[ranks] = j;
      else if (j["bench"] == "allreduce") allreduce[ranks] = j;
    }
  }
  if (train.empty())
    throw UsageError("report --scaling: no `bench train` JSON line with \"ranks\" in " + dir +
                     "/*.jsonl\nHINT: the scaling job (cluster/slurm/scaling.sbatch) writes train_N.jsonl there; run "
                     "`r1dist bench train ... > DIR/train_1.jsonl` under mpirun -np N / srun");
  make_dirs(out_dir);
  const auto& base = train.begin()->second;
  const int base_ranks = train.begin()->first;
  const double base_tps = number(base, "tokens_per_s");
  // The model's T: the one-rank compute time of a step; B and L as bench train stated them.
  const json proj = base.value("projection", json::object());
  const double T = number(proj, "step_s"), B = number(proj, "busbw_gbps"), L = number(proj, "latency_us");
  const double bytes = number(base, "allreduce_bytes");
  const std::string b_source = proj.value("busbw_source", std::string("?"));

  std::ostringstream md, dat;
  md << "# " << title << "\n\n"
     << "Weak scaling of `r1dist bench train` (preset " << base.value("preset", std::string("?")) << ", "
     << base.value("seq", 0) << " tokens x micro-batch " << base.value("micro_batch", 0) << " x grad_accum "
     << base.value("grad_accum", 0) << " per rank, " << base.value("device", std::string("?")) << ", "
     << base.value("backend", std::string("?")) << "); the baseline is " << base_ranks << " rank(s). "
     << "Efficiency = tokens/s per rank at N / tokens/s per rank at the baseline. The projection is the no-overlap "
        "ring model of docs/PERFORMANCE.md (Scaling): T = " << fixed(T, 4) << " s compute per step, "
     << fixed(bytes / 1e6, 2) << " MB reduced per step, B = " << fixed(B, 1) << " GB/s (" << b_source << "), L = "
     << fixed(L, 1) << " us.\n\n";
  md << "| GPUs (ranks) | tokens/s total | tokens/s per rank | ideal tokens/s | efficiency | projected efficiency | "
        "step s | all-reduce s | all-reduce share | busbw GB/s (bench allreduce) |\n"
     << "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  dat << "# ranks tokens_per_s_total ideal projected_total\n";
  ScalingFiles out;
  for (const auto& [n, j] : train) {
    const double tps = number(j, "tokens_per_s"), total = number(j, "tokens_per_s_total");
    const double eff = n == base_ranks ? 1.0 : tps / base_tps;
    const double projected = projected_efficiency(T, ring_allreduce_seconds(bytes, n, B, L));
    const double ideal = base_tps * n;
    double busbw = NAN;
    if (auto it = allreduce.find(n); it != allreduce.end()) busbw = number(it->second, "busbw_gbps");
    md << "| " << n << " | " << fixed(total, 1) << " | " << fixed(tps, 1) << " | " << fixed(ideal, 1) << " | "
       << pct(eff) << " | " << pct(projected) << " | " << fixed(number(j, "step_s"), 4) << " | "
       << fixed(number(j, "allreduce_s"), 5) << " | " << pct(number(j, "allreduce_share")) << " | "
       << (n == 1 ? std::string("undefined at 1 rank") : fixed(busbw, 2)) << " |\n";
    dat << n << " " << fixed(total, 3) << " " << fixed(ideal, 3) << " " << fixed(ideal * projected, 3) << "\n";
    ++out.rows;
  }
  md << "\nProjected at larger counts (same model, same T, S, B, L):\n\n| GPUs | t_comm s | projected efficiency |\n"
     << "|---:|---:|---:|\n";
  for (int n : projected_gpu_counts()) {
    const double t = ring_allreduce_seconds(bytes, n, B, L);
    md << "| " << n << " | " << fixed(t, 5) << " | " << pct(projected_efficiency(T, t)) << " |\n";
  }
  if (!allreduce.empty()) {
    md << "\n`bench allreduce` of the same buffer:\n\n| ranks | bytes | time us | algbw GB/s | busbw GB/s |\n"
       << "|---:|---:|---:|---:|---:|\n";
    for (const auto& [n, j] : allreduce)
      md << "| " << n << " | " << fixed(number(j, "bytes"), 0) << " | " << fixed(1e6 * number(j, "time_s"), 1) << " | "
         << fixed(number(j, "algbw_gbps"), 2) << " | "
         << (n == 1 ? std::string("undefined at 1 rank") : fixed(number(j, "busbw_gbps"), 2)) << " |\n";
  }
  make_dirs(out_dir + "/plot_data");
  write_file_atomic(out_dir + "/plot_data/scaling.dat", dat.str());
  std::ostringstream gp;
  gp << "# Written by r1dist report --scaling; redraw with: cd " << out_dir << " && gnuplot plot_data/scaling.gp\n"
     << png_terminal(1000, 600) << "\nset output 'scaling.png'\nset grid\nset key top left\n"
     << "set title 'tokens/s against GPU count: measured, ideal (baseline x N) and the projection'\n"
     << "set xlabel 'GPUs (ranks)'\nset ylabel 'tokens/s (all ranks)'\nset xtics (";
  {
    bool first = true;
    for (const auto& kv : train) gp << (first ? "" : ", ") << kv.first, first = false;
  }
  gp << ")\nplot 'plot_data/scaling.dat' using 1:3 with lines dt 2 lw 2 lc rgb '#444444' title 'ideal', "
     << "'' using 1:4 with linespoints pt 6 lc rgb '#ff7f0e' title 'projected', "
     << "'' using 1:2 with linespoints pt 7 ps 1.5 lw 2 lc rgb '#1f77b4' title 'measured'\n";
  write_file_atomic(out_dir + "/plot_data/scaling.gp", gp.str());
  if (draw_gnuplot(out_dir, "plot_data/scaling.gp")) {
    out.plot = out_dir + "/scaling.png";
    md << "\n![tokens/s against GPU count](scaling.png)\n";
  } else {
    md << "\n(No plot: gnuplot is not installed.)\n";
  }
  out.markdown = out_dir + "/scaling.md";
  out.html = out_dir + "/scaling.html";
  write_file_atomic(out.markdown, md.str());
  write_file_atomic(out.html, render_report_html(md.str(), out_dir, title));
  return out;
}

}  // namespace r1dist
