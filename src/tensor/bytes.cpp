#include "r1dist/tensor/bytes.h"

#include "r1dist/base/error.h"

namespace r1dist {

at::ScalarType to_scalar_type(st::DType d) {
  switch (d) {
    case st::DType::BOOL: return at::kBool;
    case st::DType::U8: return at::kByte;
    case st::DType::I8: return at::kChar;
    case st::DType::I16: return at::kShort;
    case st::DType::F16: return at::kHalf;
    case st::DType::BF16: return at::kBFloat16;
    case st::DType::I32: return at::kInt;
    case st::DType::F32: return at::kFloat;
    case st::DType::F64: return at::kDouble;
    case st::DType::I64: return at::kLong;
    default: break;
  }
  throw Error(std::string("safetensors dtype ") + st::dtype_name(d) + " has no libtorch equivalent here");
}

st::DType to_st_dtype(at::ScalarType s) {
  switch (s) {
    case at::kBool: return st::DType::BOOL;
    case at::kByte: return st::DType::U8;
    case at::kChar: return st::DType::I8;
    case at::kShort: return st::DType::I16;
    case at::kHalf: return st::DType::F16;
    case at::kBFloat16: return st::DType::BF16;
    case at::kInt: return st::DType::I32;
    case at::kFloat: return st::DType::F32;
    case at::kDouble: return st::DType::F64;
    case at::kLong: return st::DType::I64;
    default: break;
  }
  throw Error(std::string("no safetensors dtype for ") + c10::toString(s));
}

at::Tensor tensor_from_bytes(const st::TensorInfo& info, const uint8_t* data) {
  auto opts = at::TensorOptions().dtype(to_scalar_type(info.dtype));
  if (info.numel() == 0) return at::empty(info.shape, opts);
  return at::from_blob(const_cast<uint8_t*>(data), info.shape, opts);
}

}  // namespace r1dist
