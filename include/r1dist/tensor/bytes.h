// Bridges between safetensors byte views and at::Tensor.
#pragma once
#include <ATen/ATen.h>

#include "r1dist/formats/safetensors.h"

namespace r1dist {

at::ScalarType to_scalar_type(st::DType d);
st::DType to_st_dtype(at::ScalarType s);
// A CPU tensor aliasing `data` (no copy; valid while the mapping lives). Floating-point and
// integer dtypes that libtorch has; others are refused with the dtype name.
at::Tensor tensor_from_bytes(const st::TensorInfo& info, const uint8_t* data);

}  // namespace r1dist
