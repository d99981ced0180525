// Comparing tensors with a report of the worst elements (torch tests only).
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sstream>

#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"
#include <string>

namespace r1dist::test {

// A tensor of a reference file (tests/fixtures/*/reference.safetensors), copied out of the map.
inline at::Tensor reference_tensor(const st::File& f, const std::string& name) {
  const auto& info = f.at(name);
  return tensor_from_bytes(info, f.data(info)).clone();
}

// max|a-b| / max|b|: a scale-aware error that near-zero elements cannot blow up.
inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs().max() / b.to(at::kDouble).abs().max().clamp_min(1e-30))
      .item<double>();
}

// The same, and a printout of the worst elements when it exceeds `tol`.
inline double max_rel_err(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  auto a64 = a.to(at::kDouble).cpu(), b64 = b.to(at::kDouble).cpu();
  EXPECT_EQ(a64.sizes(), b64.sizes()) << what;
  auto diff = (a64 - b64).abs();
  const double err = diff.max().item<double>() / std::max(b64.abs().max().item<double>(), 1e-30);
  if (!(err < tol)) {
    auto flat = diff.flatten();
    auto [top_values, top_index] = flat.topk(std::min<int64_t>(5, flat.numel()));
    std::ostringstream os;
    os << what << ": max rel err " << err << " >= " << tol << "; worst elements (flat index: got vs want):";
    for (int64_t i = 0; i < top_index.numel(); ++i) {
      const int64_t k = top_index[i].item<int64_t>();
      os << "\n  [" << k << "] " << a64.flatten()[k].item<double>() << " vs " << b64.flatten()[k].item<double>();
    }
    ADD_FAILURE() << os.str();
  }
  return err;
}

}  // namespace r1dist::test
