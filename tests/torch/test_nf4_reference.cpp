// NF4 against the independent Python quantiser written from the spec
// (tools/reference/make_nf4_fixture.py): identical codes, absmax, double-quantised absmax
// and dequantised values on random and adversarial inputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "r1dist/quant/nf4.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

class Nf4Reference : public ::testing::TestWithParam<const char*> {
 protected:
  static const st::File& file() {
    static const st::File f = st::File::open(test::fixture("nf4/reference.safetensors"));
    return f;
  }
  at::Tensor get(const std::string& name) const {
    const auto& info = file().at(std::string(GetParam()) + "." + name);
    return tensor_from_bytes(info, file().data(info)).clone();
  }
};

TEST_P(Nf4Reference, CodesAndAbsmaxAreIdentical) {
  auto x = get("input");
  auto q = nf4::quantize(x, /*double_quant=*/true);
  auto single = nf4::quantize(x, false);
  auto want_packed = get("packed");
  if (!q.packed.equal(want_packed)) {
    auto diff = (q.packed != want_packed).nonzero();
    FAIL() << diff.size(0) << " packed bytes differ; first at byte " << diff[0][0].item<int64_t>();
  }
  EXPECT_TRUE(single.absmax.equal(get("absmax")));
  EXPECT_EQ(q.absmax_offset, get("absmax_offset")[0].item<float>());
  EXPECT_TRUE(q.absmax_scale.equal(get("absmax_scale")));
  EXPECT_TRUE(q.absmax_q.equal(get("absmax_q")));
  EXPECT_TRUE(nf4::dequantize(q, at::kFloat).equal(get("dequantized")));
}

INSTANTIATE_TEST_SUITE_P(Cases, Nf4Reference,
                         ::testing::Values("random", "scaled_blocks", "zeros", "outlier", "negative",
                                           "exact_codes", "thresholds", "odd"));

TEST(Nf4Reference, DynamicMapIsIdentical) {
  auto f = st::File::open(test::fixture("nf4/reference.safetensors"));
  const auto& info = f.at("dynamic_map");
  auto want = tensor_from_bytes(info, f.data(info));
  auto got = at::tensor(nf4::dynamic_map(), at::kFloat);
  EXPECT_TRUE(got.equal(want)) << "max diff " << (got - want).abs().max().item<double>();
}

}  // namespace
}  // namespace r1dist
