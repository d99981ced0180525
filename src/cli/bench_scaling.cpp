// r1dist bench allreduce: the one collective of a training step alone, timed as nccl-tests
// times it. The buffer is exactly what a step all-reduces (peft/lora_adapters.h
// reduce_buffer: the LoRA gradients of a preset at --rank on the training's default targets,
// counted by lora_param_count, plus LoraAdapters::kReduceTail fp32 slots), or --bytes B.
// Through the training's Communicator (NCCL on CUDA, MPI on the CPU), on every rank: --warmup
// untimed calls, then --reps calls, each after a device sync and a barrier so that only the
// collective is timed; the median of each rank, the slowest rank's is printed. algbw =
// bytes / time, busbw = algbw x 2 (N - 1) / N (undefined at one rank, where the call does
// no communication). Also: bench train's baseline (--baseline, --baseline-tps).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/comm/communicator.h"
#include "r1dist/config/config.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/peft/lora_adapters.h"
#include "r1dist/report/scaling.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/device.h"

namespace r1dist {

double bench_baseline_tps(const Args& a) {
  if (a.has("baseline-tps")) {
    const double x = a.real("baseline-tps");
    if (!(x > 0)) throw UsageError("bench train: --baseline-tps must be > 0 (tokens/s per rank at the baseline)");
    return x;
  }
  if (!a.has("baseline")) return NAN;
  const auto path = a.str("baseline");
  std::string text, why;
  if (!try_read_file(path, &text, &why))
    throw UsageError("bench train: --baseline " + path + ": " + why +
                     "\nHINT: save the one-rank line first: r1dist bench train ... > " + path);
  std::istringstream in(text);
  double tps = NAN;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("bench", "") == "train" && j.contains("tokens_per_s") &&
        j["tokens_per_s"].is_number())
      tps = j["tokens_per_s"].get<double>();
  }
  if (!(tps > 0))
    throw UsageError("bench train: --baseline " + path + " holds no `bench train` JSON line with tokens_per_s > 0\n"
                     "HINT: save the one-rank line first: r1dist bench train ... > " + path);
  return tps;
}

int bench_allreduce(const Args& a) {
  const auto& pg = dist_group();
  const auto dev = parse_device(a.str("device"), pg.local_rank);
  select_device(dev);
  const int64_t reps = a.i64("reps"), warm = a.i64("warmup");
  if (reps < 1 || warm < 0) throw UsageError("bench allreduce: --reps >= 1 and --warmup >= 0");
  int64_t elements = 0;
  std::string what;
  if (a.has("bytes")) {
    const int64_t b = a.i64("bytes");
    if (b < 4 || b % 4 != 0)
      throw UsageError("bench allreduce: --bytes must be a positive multiple of 4 (fp32 elements), got " +
                       std::to_string(b));
    elements = b / 4;
    what = "--bytes";
  } else {
    // The training's defaults: lora.targets of a default config, the step's spare slots.
    elements = lora_param_count(qwen2_preset(a.str("preset")), a.i64("rank"), Config{}.lora.targets) +
               LoraAdapters::kReduceTail;
    what = a.str("preset") + " r=" + std::to_string(a.i64("rank"));
  }
  const double bytes = double(elements) * 4;
  auto comm = make_communicator(Backend::automatic, dev);
  auto buf = at::zeros({elements}, at::TensorOptions().dtype(at::kFloat).device(dev));
  // One checked call first: every rank's ones sum to the world size.
  {
    auto probe = at::ones({std::min<int64_t>(elements, 1024)}, buf.options());
    comm->allreduce_sum(probe);
    check(probe.eq(double(pg.world)).all().item<bool>(), "bench allreduce: the sum of ones is not the rank count");
  }
  std::vector<double> t;
  for (int64_t i = 0; i < warm + reps; ++i) {
    compat::synchronize(dev);
    dist_barrier("bench allreduce: barrier before a timed all-reduce");
    const auto t0 = std::chrono::steady_clock::now();
    comm->allreduce_sum(buf);
    compat::synchronize(dev);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warm) t.push_back(s);
  }
  comm->take_seconds();
  std::sort(t.begin(), t.end());
  const double mine = t[t.size() / 2], best = t.front();
  // The slowest rank's median: the collective ends for the job when it ends there.
  char line[64];
  std::snprintf(line, sizeof line, "%.9g %.9g", mine, best);
  const auto all = dist_gather_strings(line, 0, "bench allreduce: times");
  if (pg.rank != 0) return 0;
  double time = 0, time_min = 0;
  for (const auto& s : all) {
    std::istringstream in(s);
    double m = 0, b = 0;
    in >> m >> b;
    time = std::max(time, m), time_min = std::max(time_min, b);
  }
  const double busbw = bus_bandwidth_gbps(bytes, time, pg.world);
  nlohmann::ordered_json j;
  j["bench"] = "allreduce";
  j["buffer"] = what;
  j["backend"] = comm->name();
  j["device"] = dev.str();
  j["ranks"] = pg.world;
  j["local_ranks"] = pg.local_world;
  j["elements"] = elements;
  j["bytes"] = int64_t(bytes);
  j["warmup"] = warm;
  j["reps"] = reps;
  j["time_s"] = time;
  j["time_min_s"] = time_min;
  j["algbw_gbps"] = bytes / time / 1e9;
  if (std::isnan(busbw)) {
    j["busbw_gbps"] = nullptr;
    j["busbw_note"] = "undefined at 1 rank (no communication; the time is the call's)";
  } else {
    j["busbw_gbps"] = busbw;
  }
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace r1dist
