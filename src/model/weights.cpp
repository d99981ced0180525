// Loading a Qwen2Model from a Hugging Face directory: config.json + safetensors (single file
// or sharded through the index), matched against the explicit weight table.
#include <ATen/ATen.h>

#include <algorithm>
#include <set>

#include "r1dist/error.h"
#include "r1dist/qwen2.h"
#include "r1dist/safetensors.h"
#include "r1dist/tensor_bytes.h"

namespace r1dist {

namespace {

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

}  // namespace

Qwen2Model Qwen2Model::load(const std::string& dir, at::ScalarType dtype, at::Device device) {
  const Qwen2Config cfg = read_qwen2_config(dir);
  const auto ckpt = st::Checkpoint::open_dir(dir);
  Qwen2Model model(cfg, dtype, device);

  const auto table = qwen2_weight_table(cfg);
  std::vector<std::string> missing, bad_shape;
  std::set<std::string> expected;
  for (const auto& w : table) {
    expected.insert(w.name);
    if (!ckpt.contains(w.name)) {
      missing.push_back(w.name);
      continue;
    }
    const auto& info = ckpt.info(w.name);
    if (info.shape != w.shape)
      bad_shape.push_back(w.name + ": shape " + shape_str(info.shape) + " != expected " +
                          shape_str(w.shape) + " (" + ckpt.file_of(w.name) + ")");
  }
  std::vector<std::string> unexpected;
  for (const auto& n : ckpt.names())
    if (!expected.count(n)) unexpected.push_back(n);

  if (!missing.empty() || !bad_shape.empty() || !unexpected.empty()) {
    std::string msg = "loading " + dir + ": the checkpoint does not match config.json";
    if (!missing.empty()) msg += "\n  missing " + std::to_string(missing.size()) + " tensors:" + list_some(missing);
    if (!bad_shape.empty()) msg += "\n  wrong shape:" + list_some(bad_shape);
    if (!unexpected.empty())
      msg += "\n  unexpected " + std::to_string(unexpected.size()) + " tensors:" + list_some(unexpected);
    throw Error(msg);
  }

  for (auto& [name, slot] : model.named_weights()) {
    try {
      *slot = tensor_from_bytes(ckpt.info(name), ckpt.data(name))
                  .to(at::TensorOptions().dtype(dtype).device(device), false, /*copy=*/true);
    } catch (const std::exception& e) {
      throw Error("loading " + name + " from " + ckpt.file_of(name) + ": " + e.what());
    }
  }
  return model;
}

}  // namespace r1dist
