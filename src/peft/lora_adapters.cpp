#include "r1dist/peft/lora_adapters.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "r1dist/base/error.h"
#include "r1dist/base/hash.h"

namespace r1dist {

LoraAdapters LoraAdapters::attach(std::vector<AdapterRef> targets, const LoraSpecFor& spec_for, uint64_t seed,
                                  const at::Device& device) {
  LoraAdapters a;
  a.refs_ = std::move(targets);
  std::vector<LoraSpec> specs;
  int64_t total = 0;
  for (const auto& t : a.refs_) {
    check(!t.layer->has_adapter(), "attach LoRA: " + t.module_path + " already has an adapter");
    specs.push_back(spec_for(t.module_path));
    check(specs.back().r > 0, "attach LoRA: r of " + t.module_path + " must be > 0");
    total += specs.back().r * (t.layer->in_features() + t.layer->out_features());
  }
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  a.flat_ = at::zeros({total}, f32);
  a.reduce_buffer_ = at::zeros({total + kReduceTail}, f32);
  a.flat_grad_ = a.reduce_buffer_.narrow(0, 0, total);
  int64_t off = 0;
  auto view = [&](int64_t rows, int64_t cols, at::Tensor& param) {
    const int64_t n = rows * cols;
    param = a.flat_.narrow(0, off, n).view({rows, cols}).detach().requires_grad_(true);
    param.mutable_grad() = a.flat_grad_.narrow(0, off, n).view({rows, cols});
    off += n;
  };
  const auto cast = std::make_shared<const AdapterCast>(a.flat_);
  for (size_t i = 0; i < a.refs_.size(); ++i) {
    LoraLinear& p = *a.refs_[i].layer;
    p.adapter_cast = cast;
    const LoraSpec& spec = specs[i];
    view(spec.r, p.in_features(), p.lora_A);
    view(p.out_features(), spec.r, p.lora_B);
    p.scaling = spec.scaling();
    p.dropout = spec.dropout;
    p.adapter_enabled = true;
  }
  // PEFT init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
  at::NoGradGuard ng;
  for (const auto& t : a.refs_) {
    auto gen = at::detail::createCPUGenerator(seed * 1000003ull + stable_hash64(t.module_path));
    const double bound = 1.0 / std::sqrt(double(t.layer->in_features()));
    t.layer->lora_A.copy_(at::empty(t.layer->lora_A.sizes(), at::kFloat).uniform_(-bound, bound, gen));
  }
  return a;
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapters::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : refs_) {
    const std::string base = "base_model.model." + t.module_path;
    out.emplace_back(base + ".lora_A.weight", t.layer->lora_A);
    out.emplace_back(base + ".lora_B.weight", t.layer->lora_B);
  }
  return out;
}

void LoraAdapters::set_enabled(bool on) const {
  for (const auto& t : refs_) t.layer->adapter_enabled = on;
}

}  // namespace r1dist
