#include "r1dist/base/json.h"
#include "r1dist/quant/bnb_format.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "r1dist/base/error.h"
#include "r1dist/tensor/bytes.h"

namespace r1dist::bnb {

namespace {
const char* kState = ".quant_state.bitsandbytes__nf4";

at::Tensor get(const st::Checkpoint& ckpt, const std::string& name) {
  if (!ckpt.contains(name)) throw Error("missing tensor '" + name + "' of a bitsandbytes 4-bit weight");
  return tensor_from_bytes(ckpt.info(name), ckpt.data(name)).clone();
}
}  // namespace

const std::vector<std::string>& companion_suffixes() {
  static const std::vector<std::string> s = {".absmax", ".quant_map", ".nested_absmax",
                                             ".nested_quant_map", kState};
  return s;
}

bool is_nf4(const st::Checkpoint& ckpt, const std::string& weight_name) {
  return ckpt.contains(weight_name + kState);
}

nf4::NF4Tensor read_nf4(const st::Checkpoint& ckpt, const std::string& name,
                        const std::vector<int64_t>& expected_shape) {
  const auto state_t = get(ckpt, name + kState);
  const Json doc = parse_json(std::string_view(reinterpret_cast<const char*>(state_t.data_ptr<uint8_t>()),
                                               size_t(state_t.numel())),
                              name + kState);
  const JsonView s(doc, name + kState);
  const std::string where = name + kState + ": ";
  if (s["quant_type"].string() != "nf4") throw Error(where + "quant_type " + s["quant_type"].string() + " is not nf4");
  if (s["blocksize"].integer() != nf4::kBlock)
    throw Error(where + "blocksize " + std::to_string(s["blocksize"].integer()) + " is not 64");
  nf4::NF4Tensor q;
  for (const auto& d : s["shape"].elements()) q.shape.push_back(d.integer());
  if (q.shape != expected_shape) throw Error(where + "shape does not match the model's " + name);
  q.numel = 1;
  for (auto d : q.shape) q.numel *= d;
  q.packed = get(ckpt, name).reshape({-1});
  check(q.packed.scalar_type() == at::kByte && q.packed.numel() == (q.numel + 1) / 2,
        name + ": expected " + std::to_string((q.numel + 1) / 2) + " packed bytes (U8)");
  q.code = get(ckpt, name + ".quant_map").to(at::kFloat);
  check(q.code.numel() == 16, name + ".quant_map: expected 16 values");
  const auto absmax = get(ckpt, name + ".absmax");
  check(absmax.numel() == q.n_blocks(), name + ".absmax: expected " + std::to_string(q.n_blocks()) + " blocks");
  q.double_quant = ckpt.contains(name + ".nested_absmax");
  if (!q.double_quant) {
    q.absmax = absmax.to(at::kFloat);
    return q;
  }
  if (s["nested_blocksize"].integer() != nf4::kNestedBlock)
    throw Error(where + "nested_blocksize " + std::to_string(s["nested_blocksize"].integer()) + " is not 256");
  check(absmax.scalar_type() == at::kByte, name + ".absmax: expected U8 codes with nested quantisation");
  q.absmax_q = absmax;
  q.absmax_scale = get(ckpt, name + ".nested_absmax").to(at::kFloat);
  q.code8 = get(ckpt, name + ".nested_quant_map").to(at::kFloat);
  check(q.code8.numel() == 256, name + ".nested_quant_map: expected 256 values");
  check(q.absmax_scale.numel() == (q.n_blocks() + nf4::kNestedBlock - 1) / nf4::kNestedBlock,
        name + ".nested_absmax: wrong length");
  q.absmax_offset = float(s["nested_offset"].number_or(0.0));
  return q;
}

std::vector<std::pair<std::string, at::Tensor>> nf4_tensors(const nf4::NF4Tensor& q, const std::string& name,
                                                           const std::string& dtype) {
  nlohmann::json s = {{"quant_type", "nf4"}, {"blocksize", nf4::kBlock}, {"dtype", dtype}, {"shape", q.shape}};
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back(name, q.packed.cpu().reshape({-1, 1}));
  if (q.double_quant) {
    s["nested_blocksize"] = nf4::kNestedBlock;
    s["nested_dtype"] = "float32";
    s["nested_offset"] = q.absmax_offset;
    out.emplace_back(name + ".absmax", q.absmax_q.cpu());
    out.emplace_back(name + ".nested_absmax", q.absmax_scale.cpu());
    out.emplace_back(name + ".nested_quant_map", q.code8.cpu());
  } else {
    out.emplace_back(name + ".absmax", q.absmax.cpu());
  }
  out.emplace_back(name + ".quant_map", q.code.cpu());
  const std::string text = s.dump();
  auto state = at::empty({int64_t(text.size())}, at::kByte);
  std::memcpy(state.data_ptr<uint8_t>(), text.data(), text.size());
  out.emplace_back(name + kState, state);
  return out;
}

}  // namespace r1dist::bnb
