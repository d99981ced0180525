#include "r1dist/model/decoder.h"

#include <algorithm>

#include "r1dist/base/error.h"

#ifdef R1DIST_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace r1dist {

#ifdef R1DIST_WITH_CUDA
struct Decoder::Graphs {
  struct Captured {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    at::Tensor logits;  // the graph's output buffer, rewritten by each replay
  };
  std::map<int64_t, Captured> by_span;
};
#else
struct Decoder::Graphs {
  std::map<int64_t, int> by_span;  // never filled: no CUDA
};
#endif

Decoder::Decoder(const Qwen2Model& model, int64_t capacity, bool cuda_graphs)
    : model_(model), graphs_(std::make_unique<Graphs>()) {
  check(capacity > 0, "Decoder: capacity must be > 0");
  cache_.capacity = capacity;
#ifdef R1DIST_WITH_CUDA
  graphs_on_ = cuda_graphs && model.device().is_cuda();
#else
  (void)cuda_graphs;
#endif
}

Decoder::~Decoder() = default;

int64_t Decoder::graphs_captured() const { return static_cast<int64_t>(graphs_->by_span.size()); }

at::Tensor Decoder::prefill(const at::Tensor& ids, const at::Tensor& left_pad) {
  check(cache_.length == 0, "Decoder::prefill: called twice");
  const int64_t b = ids.size(0), t = ids.size(1);
  check(t <= cache_.capacity, "Decoder: a prompt of " + std::to_string(t) + " tokens exceeds the capacity of " +
                                  std::to_string(cache_.capacity));
  auto logits = model_.forward(ids, &cache_, left_pad);
  const auto dev = model_.device();
  const auto longs = at::TensorOptions().dtype(at::kLong).device(dev);
  auto pad = left_pad.defined() ? left_pad.to(dev, at::kLong).view({-1, 1}) : at::zeros({b, 1}, longs);
  slots_.positions = at::full({b, 1}, t, longs) - pad;
  slots_.column = at::full({1}, t, longs);
  auto cols = at::arange(cache_.capacity, longs).view({1, -1});
  slots_.allowed = (cols >= pad).logical_and(cols < t).view({b, 1, 1, cache_.capacity});
  ids_ = at::zeros({b, 1}, longs);
  return logits.select(1, t - 1);
}

int64_t Decoder::span() const {
  const int64_t need = cache_.length + 1;
  return std::min(cache_.capacity, (need + kSpanBucket - 1) / kSpanBucket * kSpanBucket);
}

at::Tensor Decoder::step(const at::Tensor& tokens) {
  check(cache_.length > 0, "Decoder::step: prefill first");
  check(cache_.length < cache_.capacity, "Decoder::step: the cache's " + std::to_string(cache_.capacity) +
                                             " positions are full");
  ids_.copy_(tokens.view({-1, 1}));
  const int64_t s = span();
  at::Tensor out;
#ifdef R1DIST_WITH_CUDA
  if (graphs_on_) {
    const auto dev_index = model_.device().index();
    auto found = graphs_->by_span.find(s);
    if (found == graphs_->by_span.end() && !warmed_) {
      // The first step runs eagerly on the stream the graphs will be captured on.
      c10::cuda::device_synchronize();
      auto side = c10::cuda::getStreamFromPool(false, dev_index);
      {
        c10::cuda::CUDAStreamGuard guard(side);
        out = model_.decode_step(ids_, cache_, slots_, s);
      }
      side.synchronize();
      warmed_ = true;
      ++cache_.length;
      return out;
    }
    if (found == graphs_->by_span.end()) {
      c10::cuda::device_synchronize();
      Graphs::Captured c;
      c.graph = std::make_unique<at::cuda::CUDAGraph>();
      auto side = c10::cuda::getStreamFromPool(false, dev_index);
      {
        c10::cuda::CUDAStreamGuard guard(side);
        c.graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        c.logits = model_.decode_step(ids_, cache_, slots_, s);
        c.graph->capture_end();
      }
      side.synchronize();
      found = graphs_->by_span.emplace(s, std::move(c)).first;
    }
    found->second.graph->replay();
    ++cache_.length;
    return found->second.logits.clone();
  }
#endif
  out = model_.decode_step(ids_, cache_, slots_, s);
  ++cache_.length;
  return out;
}

}  // namespace r1dist
