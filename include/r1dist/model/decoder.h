// Token-by-token decoding over a preallocated KV cache: one prefill of the (left-padded)
// prompts, then one step per new token. On CUDA the steps are replayed as CUDA graphs: a
// decode step of a 7B model is ~1,000 small kernels whose launch from the host costs more
// than the step's math, and a graph launches them all at once.
//
// The steps attend to the cache columns up to a span rounded up to kSpanBucket, so a long
// generation does not read the whole capacity at every step; one graph per span (captured
// when the decoding first reaches it). The first step runs eagerly (it warms up the kernels
// and libraries before any capture). With graphs off (and always on the CPU) every step runs
// the same decode_step eagerly, so the CPU tests check the math that the graphs replay.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>

#include "r1dist/model/qwen2.h"

namespace r1dist {

class Decoder {
 public:
  static constexpr int64_t kSpanBucket = 256;

  // capacity: prompt + new tokens, the most positions any row will hold.
  Decoder(const Qwen2Model& model, int64_t capacity, bool cuda_graphs);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // (B, T) ids, left_pad (B) int64 or undefined: (B, vocab) logits of each row's last token.
  at::Tensor prefill(const at::Tensor& ids, const at::Tensor& left_pad);
  // (B) int64 tokens -> (B, vocab) logits of the next position.
  at::Tensor step(const at::Tensor& tokens);

  int64_t length() const { return cache_.length; }
  bool graphs_enabled() const { return graphs_on_; }
  int64_t graphs_captured() const;

 private:
  int64_t span() const;

  const Qwen2Model& model_;
  KVCache cache_;
  DecodeSlots slots_;
  at::Tensor ids_;  // (B, 1) the step's input, a fixed buffer (what a graph reads)
  bool graphs_on_ = false;
  bool warmed_ = false;
  struct Graphs;  // CUDA graphs by span (defined only in CUDA builds)
  std::unique_ptr<Graphs> graphs_;
};

}  // namespace r1dist
