// The random streams of a rank: the seed each rank starts from, and the generators' states
// as one byte string (what a checkpoint keeps per rank). Only LoRA dropout draws from them.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace r1dist {

// The seed of rank `rank` at step `step` (0 at the start; a resume on another world size
// reseeds at its step): train.seed + 1000003 x rank + step.
uint64_t rank_seed(int64_t train_seed, int rank, int64_t step = 0);

// The CPU generator's state, and the CUDA one of `device` when it is a GPU: per state an
// 8-byte little-endian length and its bytes.
std::string save_rng(const at::Device& device);
// Restores what save_rng wrote; Error when the bytes are truncated.
void load_rng(const std::string& bytes, const at::Device& device);

}  // namespace r1dist
