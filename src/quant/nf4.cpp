#include "r1dist/nf4.h"

#include <algorithm>
#include <cmath>

#include "r1dist/error.h"

namespace r1dist::nf4 {

const std::array<float, 16>& code() {
  static const std::array<float, 16> c = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
      -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
      0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
      0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
  return c;
}

const std::vector<float>& dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i in
  // 0..6, 2^i fractions (midpoints of linspace(0.1, 1, 2^i + 1)) times 10^(i-6), both signs;
  // then 0 and 1. Computed with the same ATen ops in fp32 as the Python original.
  static const std::vector<float> m = [] {
    std::vector<float> v;
    for (int i = 0; i < 7; ++i) {
      auto b = at::linspace(0.1, 1.0, (1 << i) + 1, at::kFloat);
      auto means = (b.slice(0, 0, -1) + b.slice(0, 1)) / 2.0;
      auto pos = means * std::pow(10.0, i - 6);
      auto neg = means * -std::pow(10.0, i - 6);
      for (int64_t k = 0; k < pos.numel(); ++k) v.push_back(pos[k].item<float>());
      for (int64_t k = 0; k < neg.numel(); ++k) v.push_back(neg[k].item<float>());
    }
    v.push_back(0.0f);
    v.push_back(1.0f);
    std::sort(v.begin(), v.end());
    return v;
  }();
  return m;
}

namespace {

at::Tensor code_tensor(at::Device d) {
  return at::tensor(std::vector<float>(code().begin(), code().end()), at::kFloat).to(d);
}

// Index of the nearest value of the sorted `book` for each x (ties to the lower index):
// the count of midpoints strictly below x, i.e. SPEC §6's strict '>' thresholds.
at::Tensor nearest(const at::Tensor& x, const at::Tensor& book) {
  auto mids = (book.slice(0, 0, -1) + book.slice(0, 1)) / 2.0;
  return at::bucketize(x, mids, /*out_int32=*/false, /*right=*/false);
}

}  // namespace

int64_t NF4Tensor::storage_bytes() const {
  int64_t n = packed.numel() + code.numel() * 4;
  if (double_quant) n += absmax_q.numel() + absmax_scale.numel() * 4 + code8.numel() * 4 + 4;
  else n += absmax.numel() * 4;
  return n;
}

NF4Tensor NF4Tensor::to(at::Device d) const {
  NF4Tensor o = *this;
  o.packed = packed.to(d);
  o.code = code.to(d);
  if (double_quant) {
    o.absmax_q = absmax_q.to(d);
    o.absmax_scale = absmax_scale.to(d);
    o.code8 = code8.to(d);
  } else {
    o.absmax = absmax.to(d);
  }
  return o;
}

NF4Tensor quantize(const at::Tensor& w, bool double_quant, const std::string& what) {
  check(w.is_floating_point(), "NF4: " + what + " is not a floating-point tensor");
  NF4Tensor q;
  q.shape = w.sizes().vec();
  q.numel = w.numel();
  q.double_quant = double_quant;
  auto x = w.detach().reshape({-1}).to(at::kFloat);
  auto bad = x.isfinite().logical_not();
  if (bad.any().item<bool>()) {
    const int64_t first = bad.nonzero()[0][0].item<int64_t>();
    throw Error("NF4: " + what + " holds NaN or Inf (first at flat index " + std::to_string(first) +
                "); refusing to quantise");
  }
  const int64_t nb = q.n_blocks();
  if (nb * kBlock != q.numel) x = at::constant_pad_nd(x, {0, nb * kBlock - q.numel}, 0.0);
  auto blocks = x.view({nb, kBlock});
  auto amax = blocks.abs().amax(1);                                    // (nb)
  auto safe = at::where(amax > 0, amax, at::ones_like(amax));          // all-zero block -> code of 0
  auto idx = nearest(blocks / safe.unsqueeze(1), code_tensor(x.device())).to(at::kByte);  // (nb, 64)
  auto flat = idx.reshape({-1}).slice(0, 0, q.numel);
  if (flat.numel() % 2) flat = at::constant_pad_nd(flat, {0, 1}, 7);
  auto pairs = flat.view({-1, 2});
  q.packed = pairs.select(1, 0).__lshift__(4).bitwise_or(pairs.select(1, 1)).contiguous();
  q.code = code_tensor(x.device());
  if (!double_quant) {
    q.absmax = amax.contiguous();
    return q;
  }
  // The offset is summed in double so that it does not depend on the reduction order.
  q.absmax_offset = static_cast<float>(amax.to(at::kDouble).mean().item<double>());
  auto centred = amax - q.absmax_offset;
  const int64_t nb2 = (nb + kNestedBlock - 1) / kNestedBlock;
  auto c2 = at::constant_pad_nd(centred, {0, nb2 * kNestedBlock - nb}, 0.0).view({nb2, kNestedBlock});
  auto scale = c2.abs().amax(1);
  auto safe2 = at::where(scale > 0, scale, at::ones_like(scale));
  q.code8 = at::tensor(dynamic_map(), at::kFloat).to(x.device());
  q.absmax_q = nearest(c2 / safe2.unsqueeze(1), q.code8).to(at::kByte).reshape({-1}).slice(0, 0, nb).contiguous();
  q.absmax_scale = scale.contiguous();
  return q;
}

at::Tensor absmax(const NF4Tensor& q) {
  if (!q.double_quant) return q.absmax;
  auto scale = q.absmax_scale.repeat_interleave(kNestedBlock).slice(0, 0, q.n_blocks());
  return q.code8.index_select(0, q.absmax_q.to(at::kLong)) * scale + q.absmax_offset;
}

at::Tensor dequantize_reference(const NF4Tensor& q, at::ScalarType dtype) {
  auto hi = q.packed.__rshift__(4), lo = q.packed.bitwise_and(15);
  auto idx = at::stack({hi, lo}, 1).reshape({-1}).to(at::kLong);
  const int64_t nb = q.n_blocks();
  idx = at::constant_pad_nd(idx, {0, nb * kBlock - idx.numel()}, 7);
  auto vals = q.code.index_select(0, idx).view({nb, kBlock}) * absmax(q).unsqueeze(1);
  return vals.reshape({-1}).slice(0, 0, q.numel).view(q.shape).to(dtype);
}

at::Tensor dequantize(const NF4Tensor& q, at::ScalarType dtype) {
#ifdef R1DIST_WITH_CUDA
  if (q.device().is_cuda()) return dequantize_cuda(q, dtype);
#endif
  return dequantize_reference(q, dtype);
}

}  // namespace r1dist::nf4
