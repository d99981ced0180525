// Weak scaling of the data-parallel step (docs/PERFORMANCE.md, "Scaling"): the model that
// `r1dist bench train` prints as its projection and `r1dist report --scaling` sets beside
// each measured point, and that report.
//
// A step computes, then all-reduces the LoRA gradient buffer once, then updates: the
// reduction does not overlap the backward (train/step.h), so with a step's compute time T
// (one rank), the buffer's size S bytes, the bus bandwidth B (nccl-tests' busbw) and the
// latency L of one ring hop, a ring all-reduce over N ranks takes
//   t_comm(N) = 2 (N - 1) / N * S / B + 2 (N - 1) * L
// and the weak-scaling efficiency (tokens/s per rank at N over tokens/s at 1) is
//   efficiency(N) = T / (T + t_comm(N)).
// Load imbalance (bench balance) and stragglers are outside the model: measured points
// below it show them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace r1dist {

// The assumed defaults when nothing was measured or given: one 400 Gb/s NIC per GPU at
// about 80% of its line rate (the inter-node ring is bound by it), and 10 us per hop.
constexpr double kAssumedBusbwGBps = 40.0;
constexpr double kAssumedLatencyUs = 10.0;
// The GPU counts every projection covers.
const std::vector<int>& projected_gpu_counts();

// Seconds of one ring all-reduce of `bytes` over `ranks` (0 at one rank).
double ring_allreduce_seconds(double bytes, int ranks, double busbw_gbps, double latency_us);
// T / (T + t_comm).
double projected_efficiency(double step_s, double comm_s);
// nccl-tests' bus bandwidth of a measured all-reduce: bytes / seconds * 2 (N - 1) / N, in GB/s
// (undefined at one rank: returns NaN).
double bus_bandwidth_gbps(double bytes, double seconds, int ranks);

// `r1dist report --scaling DIR`: reads every JSON line of DIR/*.jsonl that `bench train` and
// `bench allreduce` printed (one train line per rank count; the smallest count is the
// baseline, 100% at one rank) and writes OUT_DIR/scaling.md, scaling.html and scaling.png
// (tokens/s against GPU count with the ideal line; when gnuplot is installed): a table with a
// row per rank count (tokens/s total and per rank, efficiency, all-reduce time and share,
// bus bandwidth, the projected efficiency beside the measured one) and the projection to
// larger counts. Throws with a HINT when DIR holds no bench train line.
struct ScalingFiles {
  std::string markdown, html, plot;  // plot empty without gnuplot
  size_t rows = 0;
};
ScalingFiles write_scaling_report(const std::string& dir, const std::string& out_dir, const std::string& title);

}  // namespace r1dist
