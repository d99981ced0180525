// ActivationOffload: tensors that a layer's backward needs, kept in page-locked host memory
// from the forward to the backward instead of in GPU memory (train.offload_layers).
//
// A group is one layer's tensors. In the forward each tensor is copied to the host on a copy
// stream of its own, overlapped with the next layers' compute, and its GPU memory goes back to
// the caching allocator once that copy is done. Before it starts group g the CPU waits for
// the copies of group g - kInFlight, so at most kInFlight groups' GPU memory waits for the host
// link at one time whatever the link's speed (a slow link slows the forward; it never raises
// the peak). The backward takes the groups back in reverse order: the first take of group g
// issues the copies of g (unless issued already) and of the group before it (the prefetch that
// overlaps g's backward) on a second copy stream; the compute stream waits for g's copies
// only. Values are copied, never changed: the backward sees the same bits as without offload.
// On the CPU the same bookkeeping copies into buffers of its own (what the tests compare).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <memory>
#include <string>

#include "r1dist/config/memory_estimate.h"

namespace r1dist {

class ActivationOffload {
 public:
  static constexpr int64_t kInFlight = kOffloadGroupsInFlight;

  explicit ActivationOffload(at::Device device);
  ~ActivationOffload();
  ActivationOffload(const ActivationOffload&) = delete;
  ActivationOffload& operator=(const ActivationOffload&) = delete;

  // Starts a forward: what the previous one left and the backward never took is dropped.
  void reset();
  // Starts the next group (one layer) of this forward.
  void begin_group();
  // Begins moving t to the host; take(key) gives it back.
  int64_t put(const at::Tensor& t);
  // The tensor of `key` on its device again, ready for the current stream (once per key).
  at::Tensor take(int64_t key);
  // The forward is done: the last group's copies back begin (they overlap the loss).
  void forward_done();
  // Bytes put since the last reset.
  int64_t bytes() const;

  // While a Scope exists on this thread, the autograd functions that keep tensors for the
  // backward (peft/lora_linear.cpp) put them into `offload` instead; with `attention` the
  // attention's q, k, v and o_proj's input too (the attention recomputed from them in the
  // backward: model/qwen2.cpp).
  class Scope {
   public:
    explicit Scope(ActivationOffload& offload, bool attention = false);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ActivationOffload* previous_;
    bool previous_attention_;
  };
  static ActivationOffload* active();
  // Whether the active scope offloads the attention's tensors too.
  static bool attention_active();

 private:
  struct Impl;
  void fetch(size_t group);
  std::unique_ptr<Impl> impl_;
};

// t for an autograd function's save_for_backward: t itself, or, while an ActivationOffload is
// active on this thread (and, for an `attention_part`, offloads the attention), an undefined
// stand-in while t waits in host memory under ctx->saved_data[name]; restore_saved gives it
// back in the backward.
at::Tensor offload_saved(torch::autograd::AutogradContext* ctx, const std::string& name, const at::Tensor& t,
                         bool attention_part = false);
at::Tensor restore_saved(torch::autograd::AutogradContext* ctx, const std::string& name, const at::Tensor& saved);

// The page-locked host memory one rank may take for offloaded activations: 80% of this node's
// memory (0 where unknown) shared evenly among its `local_ranks`.
constexpr double kPinnedHostShare = 0.8;
double pinned_host_cap(int local_ranks);

// The rates train.offload = "auto" plans with before the model is loaded, timed on `device` (a
// CUDA one; elsewhere all zero): the host link as a 256 MB copy to page-locked memory (median
// of 5 after a warm-up), and as the compute rate one (4,096 x hidden) x (hidden x intermediate)
// product in `dtype` (median of 3), about 60 ms. A layer's forward runs slower than that
// product alone (a 14B layer at 8,192 tokens ~30% slower on an H200), so with the model loaded
// the run replaces the figure by its own layer's (train/build_run.h: with_layer_forward_rate).
// `host_bytes` is passed through.
OffloadRates measure_offload_rates(const at::Device& device, int64_t hidden, int64_t intermediate,
                                   at::ScalarType dtype, double host_bytes);

}  // namespace r1dist
