// LoRA adapters on a Qwen2Model: attaching them (PEFT init) over one flat fp32 buffer.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "r1dist/error.h"
#include "r1dist/hash.h"
#include "r1dist/qwen2.h"

namespace r1dist {

std::vector<AdapterRef> Qwen2Model::adapters() {
  std::vector<AdapterRef> out;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i)
    for (const auto& m : projection_names()) {
      auto& p = layers_[i].proj(m);
      if (!p.has_adapter()) continue;
      const char* group = (m == "gate_proj" || m == "up_proj" || m == "down_proj") ? "mlp." : "self_attn.";
      out.push_back({"model.layers." + std::to_string(i) + "." + group + m, &p});
    }
  return out;
}

void Qwen2Model::attach_lora(const LoraSpec& spec, const std::vector<std::string>& targets, uint64_t seed) {
  check(!lora_flat_.defined(), "attach_lora: the model already has adapters");
  check(spec.r > 0, "attach_lora: r must be > 0");
  for (const auto& t : targets)
    if (std::find(projection_names().begin(), projection_names().end(), t) == projection_names().end())
      throw UsageError("lora target '" + t + "' is not a Qwen2 projection");

  // Mark the targets, then size the buffer, then carve views out of it.
  std::vector<LoraLinear*> chosen;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i)
    for (const auto& m : projection_names())
      if (std::find(targets.begin(), targets.end(), m) != targets.end()) chosen.push_back(&layers_[i].proj(m));
  int64_t total = 0;
  for (auto* p : chosen) total += spec.r * (p->in_features() + p->out_features());

  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device_);
  lora_flat_ = at::zeros({total}, f32);
  lora_flat_grad_ = at::zeros({total}, f32);
  int64_t off = 0;
  auto view = [&](int64_t rows, int64_t cols, at::Tensor& param) {
    const int64_t n = rows * cols;
    param = lora_flat_.narrow(0, off, n).view({rows, cols}).detach().requires_grad_(true);
    param.mutable_grad() = lora_flat_grad_.narrow(0, off, n).view({rows, cols});
    off += n;
  };
  for (auto* p : chosen) {
    view(spec.r, p->in_features(), p->lora_A);
    view(p->out_features(), spec.r, p->lora_B);
    p->scaling = spec.scaling();
    p->dropout = spec.dropout;
    p->adapter_enabled = true;
  }
  // PEFT init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
  at::NoGradGuard ng;
  for (auto& a : adapters()) {
    auto gen = at::detail::createCPUGenerator(seed * 1000003ull + fnv1a(a.module_path));
    const double bound = 1.0 / std::sqrt(double(a.layer->in_features()));
    auto init = at::empty(a.layer->lora_A.sizes(), at::kFloat).uniform_(-bound, bound, gen);
    a.layer->lora_A.copy_(init);
  }
}

std::vector<std::pair<std::string, at::Tensor>> Qwen2Model::lora_named_parameters() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& a : adapters()) {
    const std::string base = "base_model.model." + a.module_path;
    out.emplace_back(base + ".lora_A.weight", a.layer->lora_A);
    out.emplace_back(base + ".lora_B.weight", a.layer->lora_B);
  }
  return out;
}

void Qwen2Model::set_adapters_enabled(bool on) {
  for (auto& a : adapters()) a.layer->adapter_enabled = on;
}

}  // namespace r1dist
