// r1dist bench: measurements that are not tests. `bench nf4`: bytes per weight of the NF4
// projections of a preset, and dequantisation bandwidth against a device-to-device copy in
// the same run.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>

#include "r1dist/cli.h"
#include "r1dist/cli_util.h"
#include "r1dist/log.h"
#include "r1dist/nf4.h"
#include "r1dist/qwen2.h"
#include "r1dist/torch_compat.h"

namespace r1dist {

namespace {

// Median seconds of `fn` over `reps` timed runs after `warm` untimed ones.
template <class F>
double time_median(const at::Device& dev, int warm, int reps, F fn) {
  for (int i = 0; i < warm; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    compat::synchronize(dev);
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    compat::synchronize(dev);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int bench_nf4(const cxxopts::ParseResult& r) {
  const auto cfg = qwen2_preset(r["preset"].as<std::string>());
  const auto dev = parse_device(r["device"].as<std::string>());
  int64_t layers = r["layers"].as<int64_t>();
  if (layers <= 0 || layers > cfg.num_hidden_layers) layers = cfg.num_hidden_layers;

  // 1. Memory: quantise every projection of `layers` layers from random bf16 weights, keep
  // them all resident, and count the bytes they hold.
  std::vector<nf4::NF4Tensor> kept;
  int64_t weights = 0, bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& w : qwen2_weight_table(cfg)) {
    if (w.role != WeightRole::projection || w.layer >= layers) continue;
    auto dense = at::randn(w.shape, at::TensorOptions().device(dev).dtype(at::kBFloat16)) * 0.02;
    kept.push_back(nf4::quantize(dense, true, w.name));
    weights += dense.numel();
    bytes += kept.back().storage_bytes();
  }
  compat::synchronize(dev);
  const double qs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("nf4 memory: %s, %lld of %lld layers, %.3f G projection weights -> %.3f GB NF4: %.4f bytes/weight "
              "(bf16 would be 2.0; target <= 0.52); quantised in %.1f s on %s\n",
              r["preset"].as<std::string>().c_str(), (long long)layers, (long long)cfg.num_hidden_layers,
              weights / 1e9, bytes / 1e9, double(bytes) / double(weights), qs, dev.str().c_str());

  // 2. Bandwidth: dequantise the largest projections of one layer to bf16 and compare with a
  // device-to-device copy moving the same number of bytes (read + write).
  std::vector<const nf4::NF4Tensor*> big;
  for (size_t i = 0; i < 7 && i < kept.size(); ++i) big.push_back(&kept[i]);
  int64_t moved = 0;
  for (auto* q : big) moved += q->storage_bytes() + q->numel * 2;
  const int reps = dev.is_cuda() ? 50 : 3;
  const double t_deq = time_median(dev, 3, reps, [&] {
    for (auto* q : big) nf4::dequantize(*q, at::kBFloat16);
  });
  auto src = at::empty({moved / 2}, at::TensorOptions().device(dev).dtype(at::kByte)).fill_(1);
  auto dst = at::empty_like(src);
  const double t_copy = time_median(dev, 3, reps, [&] { dst.copy_(src); });
  const double bw_deq = moved / t_deq / 1e9, bw_copy = double(src.numel()) * 2 / t_copy / 1e9;
  std::printf("nf4 dequant bandwidth: %.1f GB/s (%.3f ms for %.1f MB read+written, one layer of %s); "
              "device copy %.1f GB/s; ratio %.2f (target >= 0.80)\n",
              bw_deq, t_deq * 1e3, moved / 1e6, r["preset"].as<std::string>().c_str(), bw_copy, bw_deq / bw_copy);
  return 0;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  cxxopts::Options o("r1dist bench", "Benchmarks (numbers printed, nothing asserted). Kinds: nf4.");
  o.add_options()
      ("kind", "what to measure: nf4", cxxopts::value<std::string>())
      ("preset", "model shape", cxxopts::value<std::string>()->default_value("r1-distill-qwen-14b"))
      ("device", "auto, cpu, cuda", cxxopts::value<std::string>()->default_value("auto"))
      ("layers", "layers to quantise (0 = all)", cxxopts::value<int64_t>()->default_value("0"));
  o.parse_positional({"kind"});
  cxxopts::ParseResult r;
  if (!parse_or_help(o, argc, argv, r)) return 0;
  const auto kind = required(r, o, "kind");
  if (kind == "nf4") return bench_nf4(r);
  throw UsageError("bench: unknown kind '" + kind + "' (known: nf4)");
}

}  // namespace r1dist
