// The LoRA adapters of a model: every A and B of the chosen projections carved out of ONE
// flat fp32 buffer, and their gradients out of another (views; autograd accumulates in
// place), so that a data-parallel step all-reduces a single tensor. Initialised as HF PEFT
// does (A kaiming-uniform with a = sqrt(5), B zeros), seeded per module path.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "r1dist/peft/lora_linear.h"

namespace r1dist {

// One projection under its PEFT module path, e.g. model.layers.0.self_attn.q_proj.
struct AdapterRef {
  std::string module_path;
  LoraLinear* layer;
};

class LoraAdapters {
 public:
  LoraAdapters() = default;  // none attached
  // Gives each projection in `targets` an adapter of spec_for(its module path); `seed` with
  // the module path seeds A.
  static LoraAdapters attach(std::vector<AdapterRef> targets, const LoraSpecFor& spec_for, uint64_t seed,
                             const at::Device& device);

  bool attached() const { return flat_.defined(); }
  const std::vector<AdapterRef>& refs() const { return refs_; }
  // PEFT tensor names (base_model.model.<module>.lora_{A,B}.weight) -> views into flat().
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  at::Tensor flat() const { return flat_; }
  at::Tensor flat_grad() const { return flat_grad_; }
  // flat_grad() followed by kReduceTail spare fp32 slots in the same storage: the buffer a
  // training step all-reduces, so that a few scalars (the step's loss, the ranks' stop
  // votes) travel with the gradients in one collective.
  static constexpr int64_t kReduceTail = 4;
  at::Tensor reduce_buffer() const { return reduce_buffer_; }
  // Off: every adapted projection computes its frozen base only (the untouched model).
  void set_enabled(bool on) const;

 private:
  std::vector<AdapterRef> refs_;
  at::Tensor flat_, flat_grad_, reduce_buffer_;
};

// Switches the adapters off for its lifetime (the base model, without a second copy), and
// back on even when the scope ends by an exception.
class AdaptersOff {
 public:
  explicit AdaptersOff(const LoraAdapters& a) : a_(a) { a_.set_enabled(false); }
  ~AdaptersOff() { a_.set_enabled(true); }
  AdaptersOff(const AdaptersOff&) = delete;
  AdaptersOff& operator=(const AdaptersOff&) = delete;

 private:
  const LoraAdapters& a_;
};

}  // namespace r1dist
