#include "r1dist/tensor/token_batch.h"

namespace r1dist {

TokenBatch to_device(const Collated& c, const at::Device& device) {
  auto as_tensor = [&](const std::vector<int64_t>& v) {
    // A copy (also on the CPU): the tensors outlive the vectors.
    return at::from_blob(const_cast<int64_t*>(v.data()), {c.batch, c.seq}, at::kLong)
        .to(device, at::kLong, /*non_blocking=*/false, /*copy=*/true);
  };
  return {as_tensor(c.ids), as_tensor(c.labels), c.loss_tokens};
}

}  // namespace r1dist
