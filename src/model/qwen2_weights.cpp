// Loading a Qwen2Model from a Hugging Face directory: config.json + safetensors (single file
// or sharded through the index), matched against the explicit weight table.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "r1dist/base/error.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/log/log.h"
#include "r1dist/log/meter.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/quant/bnb_format.h"
#include "r1dist/tensor/bytes.h"
#include "r1dist/tensor/compat.h"
#include "r1dist/tensor/host_prefetch.h"

namespace r1dist {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Converting {  // adds the time from t to the end of the scope, whichever way it is left
  double& total;
  Clock::time_point t;
  ~Converting() { total += since(t); }
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string list_some(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 5);
  for (size_t i = 0; i < shown; ++i) out += "\n    " + names[i];
  if (names.size() > shown) out += "\n    ... and " + std::to_string(names.size() - shown) + " more";
  return out;
}

// The stored dtypes a weight may have: the floating-point ones libtorch takes. An integer
// tensor would be cast to float silently, which no Qwen2 checkpoint means.
bool weight_dtype(st::DType d) {
  return d == st::DType::F16 || d == st::DType::BF16 || d == st::DType::F32 || d == st::DType::F64;
}

// Compares the checkpoint's names, shapes and dtypes with the weight table; every problem at
// once (UsageError: the files do not describe this model). Projections stored in the
// bitsandbytes 4-bit layout bring companion tensors and a packed shape; bnb::read_nf4 checks
// those against the quant state. With tied embeddings a stored lm_head.weight is ignored, as
// transformers ignores it (the output layer is the embedding).
void check_against_table(const st::Checkpoint& ckpt, const Qwen2Config& cfg, const std::vector<WeightSpec>& table,
                         const std::string& dir) {
  std::vector<std::string> missing, bad_shape, bad_dtype, unexpected;
  std::set<std::string> expected;
  if (cfg.tie_word_embeddings && ckpt.contains("lm_head.weight")) {
    expected.insert("lm_head.weight");
    log::info("loading ", dir,
              ": config.json ties the output layer to the embedding (tie_word_embeddings = true), "
              "so the stored lm_head.weight is ignored, as transformers ignores it");
  }
  for (const auto& w : table) {
    expected.insert(w.name);
    if (!ckpt.contains(w.name)) {
      missing.push_back(w.name);
      continue;
    }
    if (w.role == WeightRole::projection && bnb::is_nf4(ckpt, w.name)) {
      for (const auto& suffix : bnb::companion_suffixes()) expected.insert(w.name + suffix);
      continue;
    }
    const auto& info = ckpt.info(w.name);
    if (info.shape != w.shape)
      bad_shape.push_back(w.name + ": shape " + shape_str(info.shape) + " != expected " +
                          shape_str(w.shape) + " (" + ckpt.file_of(w.name) + ")");
    if (!weight_dtype(info.dtype))
      bad_dtype.push_back(w.name + ": " + st::dtype_name(info.dtype) + " (" + ckpt.file_of(w.name) + ")");
  }
  for (const auto& n : ckpt.names())
    if (!expected.count(n)) unexpected.push_back(n);
  if (missing.empty() && bad_shape.empty() && bad_dtype.empty() && unexpected.empty()) return;
  std::string msg = "loading " + dir + ": the checkpoint does not match config.json";
  if (!missing.empty()) msg += "\n  missing " + std::to_string(missing.size()) + " tensors:" + list_some(missing);
  if (!bad_shape.empty()) msg += "\n  wrong shape:" + list_some(bad_shape);
  if (!bad_dtype.empty())
    msg += "\n  not a floating-point weight (F16, BF16, F32 or F64 are read):" + list_some(bad_dtype);
  if (!unexpected.empty())
    msg += "\n  unexpected " + std::to_string(unexpected.size()) + " tensors:" + list_some(unexpected);
  const bool only_dtypes = missing.empty() && bad_shape.empty() && unexpected.empty();
  throw UsageError(msg + (only_dtypes ? "\nHINT: convert the checkpoint to bf16 (or f16, f32) weights first"
                                      : "\nHINT: model.path must hold the weights its config.json describes (a "
                                        "complete download of one Qwen2 model)"));
}

}  // namespace

Qwen2Model Qwen2Model::load(const std::string& dir, at::ScalarType dtype, at::Device device,
                            const LoadOptions& opt) {
  const Qwen2Config cfg = read_qwen2_config(dir);
  const auto ckpt = st::Checkpoint::open_dir(dir);
  const auto table = qwen2_weight_table(cfg);
  check_against_table(ckpt, cfg, table, dir);

  Qwen2Model model(cfg, dtype, device, /*allocate=*/false);
  const auto to_compute = at::TensorOptions().dtype(dtype).device(device);
  log::Meter meter("model: loading " + dir, int64_t(table.size()), "tensors");
  struct Tick {  // one tensor done, whichever way the body leaves
    log::Meter& m;
    ~Tick() { m.advance(); }
  };
  // The stored tensors (all but projections already in the 4-bit layout) copied ahead of
  // their conversion on several threads, page-locked for a GPU (tensor/host_prefetch.h).
  std::vector<HostSource> sources;
  for (const auto& w : table) {
    if (w.role == WeightRole::projection && bnb::is_nf4(ckpt, w.name)) continue;
    const auto& info = ckpt.info(w.name);
    sources.push_back(HostSource{ckpt.data(w.name), to_scalar_type(info.dtype), info.shape});
  }
  const bool pinned = device.is_cuda();
  // Where the load's time goes, in its last line: waiting for the host copies, converting
  // (copies to the device, quantisation; asynchronous on a GPU unless the queue is full), the
  // device's remaining work, returning the page-locked staging.
  const auto start = Clock::now();
  double waited = 0, converted = 0;
  int64_t bytes = 0;
  // Quantised without a read back per weight (the device works through the copies and the
  // kernels while the next weights are queued); checked and completed once after the loop.
  nf4::PendingQuantization pending;
  HostPrefetcher prefetch(std::move(sources), PrefetchOptions{pinned});
  for (const auto& w : table) {
    Tick tick{meter};
    auto t = Clock::now();
    try {
      if (w.role == WeightRole::projection && bnb::is_nf4(ckpt, w.name)) {
        // Already quantised: kept as it is stored (nf4), or dequantised once (none).
        const Converting converting{converted, t};
        auto& p = model.layers_[w.layer].proj(w.module);
        auto q = bnb::read_nf4(ckpt, w.name, w.shape).to(device);
        bytes += int64_t(q.packed.nbytes());
        if (opt.quant == QuantMode::nf4) {
          p.qweight = q;
          p.quantized = true;
        } else {
          p.weight = nf4::dequantize(q, dtype);
        }
        continue;
      }
      const at::Tensor raw = prefetch.next();  // owned: no copy needed where nothing changes
      waited += since(t);
      t = Clock::now();
      bytes += int64_t(raw.nbytes());
      const Converting converting{converted, t};
      if (w.role == WeightRole::projection && opt.quant == QuantMode::nf4) {
        // Quantised from the stored values (not from a rounded compute-dtype copy).
        auto& p = model.layers_[w.layer].proj(w.module);
        nf4::quantize_async(p.qweight, raw.to(device, /*non_blocking=*/pinned), opt.double_quant, w.name, pending);
        p.quantized = true;
        continue;
      }
      model.weight(w) = raw.to(to_compute, /*non_blocking=*/pinned);
    } catch (const UsageError& e) {
      throw UsageError("loading " + w.name + " from " + ckpt.file_of(w.name) + ": " + e.what());
    } catch (const Error& e) {
      throw Error("loading " + w.name + " from " + ckpt.file_of(w.name) + ": " + e.what());
    }
  }
  meter.done();
  double synced = 0, released = 0;
  auto t = Clock::now();
  try {
    pending.finish();
  } catch (const Error& e) {
    throw Error("loading " + dir + ": " + e.what());
  }
  if (pinned) {
    // The copies are done before the page-locked staging goes back to the system.
    compat::synchronize(device);
    synced = since(t);
    t = Clock::now();
    release_cached_pinned_memory();
    released = since(t);
  }
  const double total = since(start);
  char line[320];
  int n = std::snprintf(line, sizeof line,
                        "%.2f GB in %.2f s (%.1f GB/s): waiting for the host copies %.2f s, converting %.2f s",
                        double(bytes) / 1e9, total, total > 0 ? double(bytes) / 1e9 / total : 0.0, waited, converted);
  if (pinned && n > 0 && size_t(n) < sizeof line)
    std::snprintf(line + n, sizeof line - size_t(n), ", the device's queue %.2f s, page-locked staging returned %.2f s",
                  synced, released);
  // Worth a line where the load was long enough to be waited for.
  if (total >= 1.0) log::info("model: loaded ", dir, ": ", line);
  else log::debug("model: loaded ", dir, ": ", line);
  return model;
}

}  // namespace r1dist
