// A collated micro-batch (data/batch_plan.h, plain vectors) as int64 tensors on a device.
#pragma once
#include <ATen/ATen.h>

#include "r1dist/data/batch_plan.h"

namespace r1dist {

struct TokenBatch {
  at::Tensor ids, labels;  // (B, T) int64
  int64_t loss_tokens = 0;
};
TokenBatch to_device(const Collated& c, const at::Device& device);

}  // namespace r1dist
