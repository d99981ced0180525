// Weights stored already quantised in the bitsandbytes 4-bit layout (the "bnb-4bit" model
// repos written by transformers + bitsandbytes): for a projection `W`,
//   W.weight                                   U8 (ceil(n/2), 1)  packed codes, high nibble first
//   W.weight.absmax                            U8 (n/64) codes of the nested quantisation (F32 without it)
//   W.weight.quant_map                         F32 (16)           the NF4 code book
//   W.weight.nested_absmax                     F32 (n/64/256)     per-256 scales
//   W.weight.nested_quant_map                  F32 (256)          the dynamic map
//   W.weight.quant_state.bitsandbytes__nf4     U8                 JSON: quant_type, blocksize,
//                                              dtype, shape, nested_blocksize, nested_offset
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "r1dist/quant/nf4.h"
#include "r1dist/formats/safetensors.h"

namespace r1dist::bnb {

// The extra tensor-name suffixes that belong to a quantised `X.weight`.
const std::vector<std::string>& companion_suffixes();
// True when the checkpoint holds `weight_name` in the bitsandbytes NF4 layout.
bool is_nf4(const st::Checkpoint& ckpt, const std::string& weight_name);
// Reads it (CPU tensors), checking the quant state (nf4, blocks of 64, nested blocks of 256)
// and `expected_shape`.
nf4::NF4Tensor read_nf4(const st::Checkpoint& ckpt, const std::string& weight_name,
                        const std::vector<int64_t>& expected_shape);
// The tensors (CPU) that store `q` under `weight_name` in that layout.
std::vector<std::pair<std::string, at::Tensor>> nf4_tensors(const nf4::NF4Tensor& q,
                                                           const std::string& weight_name,
                                                           const std::string& dtype = "bfloat16");

}  // namespace r1dist::bnb
