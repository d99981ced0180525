// Loading projections stored in the bitsandbytes 4-bit layout ("bnb-4bit" repos). The
// layout is written here from r1dist's own quantiser (bitsandbytes is not installed on any
// machine we have), so this checks the reading of the layout and the loader's name table,
// not bitsandbytes' quantiser.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>

#include "r1dist/quant/bnb_format.h"
#include "r1dist/base/fs.h"
#include "r1dist/model/qwen2.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/tensor/bytes.h"
#include "support/temp.h"
#include "support/tensors.h"

namespace r1dist {
namespace {

// Rewrites the qwen2_a fixture with every projection in the bnb NF4 layout; `edit_state`
// may change one quant-state JSON text.
void write_bnb_copy(const std::string& out, const std::string& bad_state = "") {
  const auto src = test::fixture("qwen2_a");
  copy_tree(src, out);
  std::remove((out + "/model.safetensors").c_str());
  auto ckpt = st::Checkpoint::open_dir(src);
  const auto cfg = read_qwen2_config(src);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& w : qwen2_weight_table(cfg)) {
    auto t = tensor_from_bytes(ckpt.info(w.name), ckpt.data(w.name)).clone();
    if (w.role != WeightRole::projection) {
      tensors.emplace_back(w.name, t);
      continue;
    }
    for (auto& [n, v] : bnb::nf4_tensors(nf4::quantize(t, true, w.name), w.name)) {
      if (!bad_state.empty() && n == w.name + ".quant_state.bitsandbytes__nf4" && w.layer == 1 && w.module == "up_proj") {
        v = at::empty({int64_t(bad_state.size())}, at::kByte);
        std::memcpy(v.data_ptr<uint8_t>(), bad_state.data(), bad_state.size());
      }
      tensors.emplace_back(n, v.contiguous());
    }
  }
  std::vector<st::WriteSpec> specs;
  for (auto& [n, t] : tensors) specs.push_back({n, to_st_dtype(t.scalar_type()), t.sizes().vec()});
  st::write_file(out + "/model.safetensors", specs, [&](size_t i, uint8_t* dst, size_t n) {
    std::memcpy(dst, tensors[i].second.data_ptr(), n);
  });
}

TEST(BnbFormat, PreQuantisedWeightsLoadAsTheSameModel) {
  test::TempDir tmp;
  write_bnb_copy(tmp / "bnb");
  LoadOptions nf4;
  nf4.quant = QuantMode::nf4;
  auto ids = at::randint(0, 320, {2, 12});
  at::NoGradGuard ng;
  // Quantising the bf16 fixture at load time gives exactly what the pre-quantised file holds.
  auto want = Qwen2Model::load(test::fixture("qwen2_a"), at::kFloat, at::Device(at::kCPU), nf4).forward(ids);
  auto got = Qwen2Model::load(tmp / "bnb", at::kFloat, at::Device(at::kCPU), nf4).forward(ids);
  EXPECT_TRUE(got.equal(want));
  // quant.mode = none dequantises once at load: the same function.
  auto dense = Qwen2Model::load(tmp / "bnb", at::kFloat, at::Device(at::kCPU)).forward(ids);
  test::max_rel_err(dense, want, 1e-6, "dense from bnb");
}

TEST(BnbFormat, ABadQuantStateIsNamed) {
  test::TempDir tmp;
  write_bnb_copy(tmp / "bnb", R"({"quant_type":"fp4","blocksize":64,"shape":[160,64]})");
  LoadOptions nf4;
  nf4.quant = QuantMode::nf4;
  try {
    Qwen2Model::load(tmp / "bnb", at::kFloat, at::Device(at::kCPU), nf4);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("quant_type fp4 is not nf4"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace r1dist
