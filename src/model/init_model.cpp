#include "r1dist/model/init_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/hash.h"
#include "r1dist/log/log.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"

namespace r1dist {

std::vector<std::string> write_random_model(const Qwen2Config& cfg, const std::string& dir,
                                            const InitModelOptions& opt) {
  cfg.validate("init-model");
  at::ScalarType dtype;
  if (opt.dtype == "bf16") dtype = at::kBFloat16;
  else if (opt.dtype == "fp32") dtype = at::kFloat;
  else throw UsageError("init-model: --dtype must be bf16 or fp32, got '" + opt.dtype + "'");

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("init-model: cannot create " + dir + ": " + ec.message());

  Qwen2Config out_cfg = cfg;
  out_cfg.torch_dtype = dtype == at::kBFloat16 ? "bfloat16" : "float32";
  // A vocabulary smaller than the R1 one: the special ids become its last two tokens.
  if (out_cfg.bos_token_id && *out_cfg.bos_token_id >= out_cfg.vocab_size)
    out_cfg.bos_token_id = out_cfg.vocab_size - 2;
  for (auto& id : out_cfg.eos_token_ids)
    if (id >= out_cfg.vocab_size) id = out_cfg.vocab_size - 1;
  write_file_atomic(dir + "/config.json", qwen2_config_json(out_cfg));

  at::Device device(at::kCPU);
  if (opt.device == "cuda") {
    if (!at::hasCUDA()) throw UsageError("init-model --device cuda: this build or machine has no CUDA device");
    device = at::Device(at::kCUDA, 0);
  } else if (opt.device != "cpu") {
    throw UsageError("init-model: --device must be cpu or cuda, got '" + opt.device + "'");
  }

  const auto table = qwen2_weight_table(cfg);
  std::vector<st::WriteSpec> specs;
  for (const auto& w : table) specs.push_back({w.name, to_st_dtype(dtype), w.shape});

  size_t done = 0;
  auto fill = [&](size_t i, uint8_t* dst, size_t nbytes) {
    const auto& w = table[i];
    at::Tensor t;
    if (w.role == WeightRole::norm) {
      t = at::ones(w.shape, at::kFloat);
    } else if (w.role == WeightRole::bias && opt.bias_std <= 0) {
      t = at::zeros(w.shape, at::kFloat);
    } else {
      const uint64_t seed = opt.seed * 1000003ull + stable_hash64(w.name);
      const double std = w.role == WeightRole::bias ? opt.bias_std : 0.02;
      if (device.is_cuda()) {
        // The device's default generator, reseeded per tensor (the values depend on the name only).
        // (The lock only around the reseed: normal_ takes the generator's mutex itself.)
        auto gen = at::globalContext().defaultGenerator(device);
        {
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_current_seed(seed);
        }
        t = at::empty(w.shape, at::TensorOptions().dtype(at::kFloat).device(device)).normal_(0.0, std, gen);
      } else {
        auto gen = at::detail::createCPUGenerator(seed);
        t = at::empty(w.shape, at::kFloat).normal_(0.0, std, gen);
      }
    }
    t = t.to(dtype).contiguous().cpu();
    check(size_t(t.nbytes()) == nbytes, "init-model: size mismatch for " + w.name);
    std::memcpy(dst, t.data_ptr(), nbytes);
    if (++done % 50 == 0 || done == table.size())
      log::info("init-model: ", done, "/", table.size(), " tensors");
  };
  auto files = st::write_model_dir(dir, specs, fill, opt.max_shard_bytes);
  return files;
}

}  // namespace r1dist
