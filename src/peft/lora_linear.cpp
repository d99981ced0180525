#include "r1dist/peft/lora_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "r1dist/base/env.h"
#include "r1dist/base/error.h"
#include "r1dist/tensor/fused_ops.h"
#include "r1dist/tensor/offload.h"

namespace r1dist {

bool lora_grouping() {
  static const bool on = !env_is("R1DIST_LORA_GROUP", "0");
  return on;
}

double LoraSpec::scaling() const { return rslora ? alpha / std::sqrt(double(r)) : alpha / double(r); }

int64_t LoraLinear::out_features() const { return quantized ? qweight.shape[0] : weight.size(0); }
int64_t LoraLinear::in_features() const { return quantized ? qweight.shape[1] : weight.size(1); }

at::Tensor AdapterCast::of(const at::Tensor& p, at::ScalarType dt) const {
  if (p.scalar_type() == dt) return p;
  if (!p.storage().is_alias_of(flat_.storage())) return p.to(dt);
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t version = flat_._version();
  if (!cast_.defined() || cast_.scalar_type() != dt || version != version_) {
    cast_ = flat_.to(dt);
    version_ = version;
  }
  return cast_.as_strided(p.sizes(), p.strides(), p.storage_offset() - flat_.storage_offset());
}

at::Tensor LoraLinear::adapter_in(const at::Tensor& p, at::ScalarType dt) const {
  if (adapter_cast) return adapter_cast->of(p, dt);
  return p.scalar_type() == dt ? p : p.to(dt);
}

at::Tensor LoraLinear::base_weight(at::ScalarType dtype) const {
  if (quantized) return nf4::dequantize(qweight, dtype);
  return weight.scalar_type() == dtype ? weight : weight.to(dtype);
}

void LoraLinear::quantize(bool double_quant, const std::string& name) {
  check(!quantized, "LoraLinear::quantize: " + name + " is already quantised");
  qweight = nf4::quantize(weight, double_quant, name);
  quantized = true;
  weight = at::Tensor();
}

namespace {

c10::optional<at::Tensor> bias_as(const at::Tensor& b, at::ScalarType dt) {
  if (!b.defined()) return c10::nullopt;
  return b.scalar_type() == dt ? b : b.to(dt);
}

// y + scale * (a @ w^T) for a (.., k) and w (n, k): accumulated into y by one GEMM (addmm)
// when y is a contiguous tensor of the caller's own (never a graph input), so no (.., n)
// temporaries are written and read again (the LoRA branch's product, its scaling, the sum).
at::Tensor add_product(at::Tensor y, const at::Tensor& a, const at::Tensor& w, double scale) {
  if (!y.is_contiguous()) return y + at::linear(a, w) * scale;
  y.view({-1, y.size(-1)}).addmm_(a.reshape({-1, a.size(-1)}), w.t(), /*beta=*/1.0, /*alpha=*/scale);
  return y;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the functions below keep for the backward goes through tensor/offload.h: in a layer of
// train.offload_layers it waits in host memory.
at::Tensor offloaded(AutogradContext* ctx, const std::string& name, const at::Tensor& t) {
  return offload_saved(ctx, name, t);
}
at::Tensor restored(AutogradContext* ctx, const std::string& name, const at::Tensor& saved) {
  return restore_saved(ctx, name, saved);
}

// The projection's values for input x: y = x W^T (+ b) + scaling * (xd A^T) B^T with
// xd = x * mask (mask empty: no dropout); xd and xa = xd A^T are what the backward needs.
struct LoraValues {
  at::Tensor y, xd, xa;
};

// The adapter's input: x through the dropout mask (an empty mask: no dropout).
at::Tensor dropped(const at::Tensor& x, const at::Tensor& mask) { return mask.numel() > 0 ? x * mask : x; }

#ifdef R1DIST_WITH_CUDA
// The few-row kernel's operands for the base product of `layer` on x, where it takes them
// (nf4::gemv_applies: up to nf4::kMmaMaxRows rows of x); none elsewhere.
c10::optional<nf4::GemvPart> gemv_part(const LoraLinear* layer, const at::Tensor& x, at::ScalarType dt) {
  if (!nf4::gemv_enabled()) return c10::nullopt;
  const auto bias = bias_as(layer->bias, dt);
  nf4::GemvPart part{layer->quantized ? &layer->qweight : nullptr, layer->weight, bias ? *bias : at::Tensor()};
  if (nf4::gemv_applies(x, part.q, part.w, part.bias)) return part;
  return c10::nullopt;
}
#endif

// x W^T (+ b): for the few rows of a decoding step, one kernel that reads W once without a
// dequantised copy (gemv_part, nf4::gemv_cuda); otherwise a transient dequantised W (it dies
// at the end of this function) and one GEMM.
at::Tensor base_product(const LoraLinear* layer, const at::Tensor& x, at::ScalarType dt) {
#ifdef R1DIST_WITH_CUDA
  if (const auto p = gemv_part(layer, x, dt)) return nf4::gemv_cuda(x, p->q, p->w, p->bias);
#endif
  return at::linear(x, layer->base_weight(dt), bias_as(layer->bias, dt));
}

// The base products of several projections of one input x in one launch of the few-row
// kernel, when it takes them all (nf4::gemv_parts_apply) and decoding groups them
// (nf4::gemv_grouped); empty otherwise.
std::vector<at::Tensor> grouped_base_products(const std::vector<const LoraLinear*>& layers, const at::Tensor& x) {
#ifdef R1DIST_WITH_CUDA
  if (layers.size() < 2 || !nf4::gemv_grouped()) return {};
  std::vector<nf4::GemvPart> parts;
  for (const auto* l : layers) {
    const auto part = gemv_part(l, x, x.scalar_type());
    if (!part) return {};
    parts.push_back(*part);
  }
  if (!nf4::gemv_parts_apply(x, parts)) return {};
  return nf4::gemv_cuda_parts(x, parts);
#else
  (void)layers, (void)x;
  return {};
#endif
}

// lora_values with the base product y already computed.
LoraValues lora_values_on(LoraValues v, const LoraLinear* layer, const at::Tensor& x, const at::Tensor& A,
                          const at::Tensor& B, const at::Tensor& mask) {
  const auto dt = x.scalar_type();
  if (A.numel() > 0) {
    v.xd = dropped(x, mask);
    v.xa = at::linear(v.xd, layer->adapter_in(A, dt));                               // (.., r)
    v.y = add_product(v.y, v.xa, layer->adapter_in(B, dt), layer->scaling);
  }
  return v;
}

LoraValues lora_values(const LoraLinear* layer, const at::Tensor& x, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& mask) {
  LoraValues v;
  v.y = base_product(layer, x, x.scalar_type());
  return lora_values_on(std::move(v), layer, x, A, B, mask);
}

// Whether projections of one input (q, k and v; gate and up) act as one stacked adapter
// [A_1; A_2; ...]: lora_grouping() is on, and every one has an adapter and none drops its
// input (each mask makes an input of its own). The forward (stacked_xa) and the backward
// (normed_grads) follow this one rule.
bool stacks(const std::vector<at::Tensor>& As, const std::vector<at::Tensor>& masks) {
  if (As.size() < 2 || !lora_grouping()) return false;
  for (size_t j = 0; j < As.size(); ++j)
    if (As[j].numel() == 0 || masks[j].numel() > 0) return false;
  return true;
}

// [A_1; A_2; ...] in dtype dt: (sum of the ranks, in).
at::Tensor stacked_adapters(const std::vector<const LoraLinear*>& layers, const std::vector<at::Tensor>& As,
                            at::ScalarType dt) {
  std::vector<at::Tensor> parts;
  for (size_t j = 0; j < layers.size(); ++j) parts.push_back(layers[j]->adapter_in(As[j], dt));
  return at::cat(parts, 0);
}

// t's blocks along `dim` of As[j].size(0) (the ranks) each, in order: views.
std::vector<at::Tensor> rank_blocks(const at::Tensor& t, int64_t dim, const std::vector<at::Tensor>& As) {
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (const auto& A : As) {
    out.push_back(t.narrow(dim, offset, A.size(0)));
    offset += A.size(0);
  }
  return out;
}

// The rank-r products xa_j = x A_j^T of projections that share their input x, where they
// stack (stacks): one GEMM against the stacked adapters (one read of x instead of one per
// projection) whose column blocks are the xa_j; empty otherwise. Every path that makes these
// products (a checkpointed layer's first forward, its recomputation, the MLP that recomputes
// gate and up) comes here, so they agree bit for bit.
std::vector<at::Tensor> stacked_xa(const std::vector<const LoraLinear*>& layers, const at::Tensor& x,
                                   const std::vector<at::Tensor>& As, const std::vector<at::Tensor>& masks) {
  if (!stacks(As, masks)) return {};
  return rank_blocks(at::linear(x, stacked_adapters(layers, As, x.scalar_type())), -1, As);
}

// lora_values of each projection of one input x (adapters As, Bs and masks per projection,
// empty where absent), the rank-r products through stacked_xa where it takes them.
std::vector<LoraValues> shared_input_values(const std::vector<const LoraLinear*>& layers, const at::Tensor& x,
                                            const std::vector<at::Tensor>& As, const std::vector<at::Tensor>& Bs,
                                            const std::vector<at::Tensor>& masks) {
  const auto xas = stacked_xa(layers, x, As, masks);
  std::vector<LoraValues> out;
  for (size_t j = 0; j < layers.size(); ++j) {
    if (xas.empty()) {
      out.push_back(lora_values(layers[j], x, As[j], Bs[j], masks[j]));
      continue;
    }
    LoraValues v;
    v.y = base_product(layers[j], x, x.scalar_type());
    v.xd = x;
    v.xa = xas[j];
    v.y = add_product(v.y, v.xa, layers[j]->adapter_in(Bs[j], x.scalar_type()), layers[j]->scaling);
    out.push_back(std::move(v));
  }
  return out;
}

// a (.., k) @ b (k, n) * scale as one GEMM, the scale applied to the fp32 sums before their one
// rounding: no product rounded and then scaled and rounded again, and no (.., n) pass for
// the scale (the LoRA gradients' rank-r products: a few hundred small kernels a step less).
at::Tensor scaled_matmul(const at::Tensor& a, const at::Tensor& b, double scale) {
  const auto a2 = a.reshape({-1, a.size(-1)});
  auto out = at::empty({a2.size(0), b.size(1)}, a.options());
  at::addmm_out(out, out, a2, b, /*beta=*/0.0, /*alpha=*/scale);  // beta 0: out's contents are not read
  auto shape = a.sizes().vec();
  shape.back() = b.size(1);
  return out.view(shape);
}

// gx = g W (undefined gx) or gx += g W: the base's part of the input gradient, W dequantised
// for the product alone.
void add_base_input_grad(const LoraLinear* layer, const at::Tensor& g, at::Tensor& gx) {
  const auto w = layer->base_weight(g.scalar_type());  // re-dequantised, transient
  if (!gx.defined())
    gx = at::matmul(g, w);
  else
    gx.view({-1, gx.size(-1)}).addmm_(g.reshape({-1, g.size(-1)}), w);
}

// Gradients of lora_values for output gradient g: (gA, gB), and with gx the input gradient:
// *gx undefined becomes it; a defined *gx (a contiguous buffer of the caller's own) gets it
// added, so that projections of one input sum their input gradients in one buffer.
std::pair<at::Tensor, at::Tensor> lora_grads(const LoraLinear* layer, const at::Tensor& g, const at::Tensor& xd,
                                             const at::Tensor& xa, const at::Tensor& A, const at::Tensor& B,
                                             const at::Tensor& mask, at::Tensor* gx) {
  const bool lora = A.numel() > 0;
  const auto dt = g.scalar_type();
  at::Tensor gA, gB, gxa;
  if (lora) gxa = scaled_matmul(g, layer->adapter_in(B, dt), layer->scaling);  // (.., r)
  if (gx) {
    add_base_input_grad(layer, g, *gx);
    if (lora) {
      if (mask.numel() > 0) gx->add_(at::matmul(gxa, layer->adapter_in(A, dt)) * mask);
      else *gx = add_product(*gx, gxa, layer->adapter_in(A, dt).t(), 1.0);
    }
  }
  if (lora) {
    const int64_t r = A.size(0);
    auto g2 = g.reshape({-1, g.size(-1)});
    gB = scaled_matmul(g2.t(), xa.reshape({-1, r}), layer->scaling).to(B.scalar_type());           // (out, r)
    gA = at::matmul(gxa.reshape({-1, r}).t(), xd.reshape({-1, xd.size(-1)})).to(A.scalar_type());  // (r, in)
  }
  return {gA, gB};
}

// The backward of down(silu(gate) * up) recomputing the product from gate and up: the
// gradients of gate and up, and of down's adapter (gA, gB).
struct SwigluGrads {
  at::Tensor dgate, dup, gA, gB;
};
SwigluGrads swiglu_down_grads(const LoraLinear* down, const at::Tensor& g, const at::Tensor& gate, const at::Tensor& up,
                              const at::Tensor& xa, const at::Tensor& A, const at::Tensor& B, const at::Tensor& mask) {
  const auto xd = A.numel() > 0 ? dropped(fused::swiglu_values(gate, up), mask) : at::Tensor();
  at::Tensor gp;
  SwigluGrads out;
  std::tie(out.gA, out.gB) = lora_grads(down, g, xd, xa, A, B, mask, &gp);
  std::tie(out.dgate, out.dup) = fused::swiglu_grads(gp.contiguous(), gate, up);
  return out;
}

// One projection of n = rms_norm(x, w) in a backward: its output gradient (undefined: the
// output was not used) and what its forward kept.
struct NormedProjection {
  const LoraLinear* layer;
  at::Tensor g, xa, A, B, mask;
};

// The backward of the projections of n = rms_norm(x, w) (n and rstd rebuilt by the caller,
// which hands n over): each projection's adapter gradients (gA, gB) in order, and with
// need_gx x's gradient: the projections' input gradients summed in one buffer, each output
// gradient and then n released before the norm's backward runs once.
std::pair<at::Tensor, std::vector<std::pair<at::Tensor, at::Tensor>>> normed_grads(
    std::vector<NormedProjection> projections, at::Tensor n, const at::Tensor& rstd, const at::Tensor& x,
    const at::Tensor& w, bool need_gx) {
  std::vector<std::pair<at::Tensor, at::Tensor>> adapter_grads;
  at::Tensor gn;
  std::vector<const LoraLinear*> layers;
  std::vector<at::Tensor> As, masks;
  bool all_used = true;
  for (const auto& p : projections) {
    layers.push_back(p.layer);
    As.push_back(p.A);
    masks.push_back(p.mask);
    all_used = all_used && p.g.defined();
  }
  if (all_used && stacks(As, masks)) {
    // As stacked_xa in the forward: the rank-r gradients gxa_j = g_j B_j s_j side by side, so
    // that x's gradient takes all the adapters in one update (gx += [gxa_1 ...] [A_1; ...])
    // and the A gradients come from one product with n ([gxa_1 ...]^T n).
    const auto dt = n.scalar_type();
    std::vector<at::Tensor> gxas;
    for (auto& p : projections) {
      const int64_t r = p.A.size(0);
      gxas.push_back(scaled_matmul(p.g, p.layer->adapter_in(p.B, dt), p.layer->scaling));  // (.., r)
      if (need_gx) add_base_input_grad(p.layer, p.g, gn);
      auto gB = scaled_matmul(p.g.reshape({-1, p.g.size(-1)}).t(), p.xa.reshape({-1, r}), p.layer->scaling)
                    .to(p.B.scalar_type());  // (out, r)
      adapter_grads.push_back({at::Tensor(), std::move(gB)});
      p.g = at::Tensor();
    }
    const auto gxa = at::cat(gxas, -1);  // (.., sum of the ranks)
    gxas.clear();
    if (need_gx) gn = add_product(gn, gxa, stacked_adapters(layers, As, dt).t(), 1.0);
    const auto gA = at::matmul(gxa.reshape({-1, gxa.size(-1)}).t(), n.reshape({-1, n.size(-1)}));  // (sum, in)
    const auto blocks = rank_blocks(gA, 0, As);
    for (size_t j = 0; j < projections.size(); ++j) adapter_grads[j].first = blocks[j].to(As[j].scalar_type());
    projections.clear();
  }
  for (auto& p : projections) {
    std::pair<at::Tensor, at::Tensor> ab;
    if (p.g.defined())
      ab = lora_grads(p.layer, p.g, dropped(n, p.mask), p.xa, p.A, p.B, p.mask, need_gx ? &gn : nullptr);
    p.g = at::Tensor();
    adapter_grads.push_back(std::move(ab));
  }
  n = at::Tensor();
  at::Tensor gx;
  if (need_gx && gn.defined()) gx = fused::rms_norm_grads(gn, x, w, rstd);
  return {gx, std::move(adapter_grads)};
}

// Inputs: x (.., in), A (r, in) fp32, B (out, r) fp32, dropout mask (.., in). An absent
// adapter or mask is an EMPTY tensor, not an undefined one (libtorch 1.13 cannot take
// undefined inputs). The frozen base travels as a pointer in saved_data: it is not a
// differentiable input.
struct QLoraFunction : public torch::autograd::Function<QLoraFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& A,
                            const at::Tensor& B, const at::Tensor& mask, const LoraLinear* layer) {
    auto v = lora_values(layer, x, A, B, mask);
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    // On the fused path this is o_proj (the others have functions of their own): its input is
    // the attention's output, offloaded with the attention.
    ctx->save_for_backward({offload_saved(ctx, "xd", v.xd, /*attention_part=*/true), v.xa, A, B, mask});
    return v.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* layer = reinterpret_cast<const LoraLinear*>(ctx->saved_data["layer"].toInt());
    auto s = ctx->get_saved_variables();
    at::Tensor gx;
    const auto xd = restored(ctx, "xd", s[0]);
    auto [gA, gB] = lora_grads(layer, grads[0], xd, s[1], s[2], s[3], s[4], ctx->needs_input_grad(0) ? &gx : nullptr);
    return {gx, gA, gB, at::Tensor(), at::Tensor()};
  }
};

// The projection of silu(gate) * up (down_proj) without keeping that (.., in) product: the
// forward keeps gate and up (which the SwiGLU backward needs anyway) and the backward
// recomputes the product from them, then runs the SwiGLU backward on its gradient.
struct SwigluLoraFunction : public torch::autograd::Function<SwigluLoraFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up, const at::Tensor& A,
                            const at::Tensor& B, const at::Tensor& mask, const LoraLinear* layer) {
    auto v = lora_values(layer, fused::swiglu_values(gate, up), A, B, mask);
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->save_for_backward({offloaded(ctx, "gate", gate), offloaded(ctx, "up", up), v.xa, A, B, mask});
    return v.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* layer = reinterpret_cast<const LoraLinear*>(ctx->saved_data["layer"].toInt());
    auto s = ctx->get_saved_variables();
    const auto gate = restored(ctx, "gate", s[0]), up = restored(ctx, "up", s[1]);
    auto d = swiglu_down_grads(layer, grads[0], gate, up, s[2], s[3], s[4], s[5]);
    return {d.dgate, d.dup, d.gA, d.gB, at::Tensor(), at::Tensor()};
  }
};

// The projections of n = rms_norm(x, w) (LoraLinear::forward_normed). Inputs: x, then per
// projection {A, B, dropout mask} (empty tensors where absent), then the frozen norm weight.
// The forward keeps x, not n: the backward runs the norm's forward again (n and rstd, the
// same values bit for bit), each projection's backward on n, summing their input gradients
// into one buffer, and then the norm's backward once.
struct NormedLoraFunction : public torch::autograd::Function<NormedLoraFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList adapters,
                               const at::Tensor& w, double eps, const std::vector<const LoraLinear*>& layers) {
    const auto n = fused::rms_norm_values(x, w, eps).first;
    variable_list ys, saved{offloaded(ctx, "x", x), w};
    std::vector<int64_t> pointers;
    std::vector<at::Tensor> As, Bs, masks;
    for (size_t j = 0; j < layers.size(); ++j) {
      As.push_back(adapters[3 * j]);
      Bs.push_back(adapters[3 * j + 1]);
      masks.push_back(adapters[3 * j + 2]);
    }
    auto values = shared_input_values(layers, n, As, Bs, masks);
    for (size_t j = 0; j < layers.size(); ++j) {
      ys.push_back(values[j].y);
      saved.insert(saved.end(), {values[j].xa, As[j], Bs[j], masks[j]});
      pointers.push_back(reinterpret_cast<int64_t>(layers[j]));
    }
    ctx->saved_data["layers"] = pointers;
    ctx->saved_data["eps"] = eps;
    ctx->save_for_backward(saved);
    return ys;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const auto x = restored(ctx, "x", s[0]);
    const auto& w = s[1];
    const auto pointers = ctx->saved_data["layers"].toIntVector();
    auto [n, rstd] = fused::rms_norm_values(x, w, ctx->saved_data["eps"].toDouble());
    std::vector<NormedProjection> projections;
    for (size_t j = 0; j < pointers.size(); ++j)
      projections.push_back({reinterpret_cast<const LoraLinear*>(pointers[j]), grads[j], s[2 + 4 * j], s[3 + 4 * j],
                             s[4 + 4 * j], s[5 + 4 * j]});
    grads.clear();
    auto [gx, adapter_grads] = normed_grads(std::move(projections), std::move(n), rstd, x, w, ctx->needs_input_grad(0));
    variable_list out{gx};
    for (auto& [gA, gB] : adapter_grads) out.insert(out.end(), {gA, gB, at::Tensor()});
    out.insert(out.end(), {at::Tensor(), at::Tensor(), at::Tensor()});  // w, eps, layers
    return out;
  }
};

// The MLP of n = rms_norm(x, w) (LoraLinear::forward_mlp). Inputs: x, then {A, B, dropout
// mask} of gate, up and down (empty tensors where absent), then the frozen norm weight. The
// forward keeps x and the three rank-r products; the backward rebuilds n, then gate and up
// from n and their saved rank-r products (the forward's operations on the same operands: the
// same bits), and runs SwigluLoraFunction's and NormedLoraFunction's backward on them.
struct MlpFunction : public torch::autograd::Function<MlpFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList adapters, const at::Tensor& w,
                            double eps, const std::vector<const LoraLinear*>& layers) {
    const auto n = fused::rms_norm_values(x, w, eps).first;
    auto gate_up = shared_input_values({layers[0], layers[1]}, n, {adapters[0], adapters[3]},
                                       {adapters[1], adapters[4]}, {adapters[2], adapters[5]});
    const auto &g = gate_up[0], &u = gate_up[1];
    auto d = lora_values(layers[2], fused::swiglu_values(g.y, u.y), adapters[6], adapters[7], adapters[8]);
    variable_list saved{offloaded(ctx, "x", x), w, g.xa, u.xa, d.xa};
    saved.insert(saved.end(), adapters.begin(), adapters.end());
    std::vector<int64_t> pointers;
    for (const auto* l : layers) pointers.push_back(reinterpret_cast<int64_t>(l));
    ctx->saved_data["layers"] = pointers;
    ctx->saved_data["eps"] = eps;
    ctx->save_for_backward(saved);
    return d.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const auto x = restored(ctx, "x", s[0]);
    const auto& w = s[1];
    const auto pointers = ctx->saved_data["layers"].toIntVector();
    auto layer = [&](int j) { return reinterpret_cast<const LoraLinear*>(pointers[size_t(j)]); };
    auto xa = [&](int j) -> const at::Tensor& { return s[size_t(2 + j)]; };
    auto adapter = [&](int j, int k) -> const at::Tensor& { return s[size_t(5 + 3 * j + k)]; };
    auto [n, rstd] = fused::rms_norm_values(x, w, ctx->saved_data["eps"].toDouble());
    // gate and up as lora_values made them: the base product plus the scaled rank-r product.
    auto rebuilt = [&](int j) {
      auto y = base_product(layer(j), n, n.scalar_type());
      const auto& A = adapter(j, 0);
      return A.numel() > 0 ? add_product(y, xa(j), layer(j)->adapter_in(adapter(j, 1), n.scalar_type()), layer(j)->scaling)
                           : y;
    };
    auto gate = rebuilt(0), up = rebuilt(1);
    auto d = swiglu_down_grads(layer(2), grads[0], gate, up, xa(2), adapter(2, 0), adapter(2, 1), adapter(2, 2));
    gate = up = at::Tensor();
    std::vector<NormedProjection> projections;
    for (int j = 0; j < 2; ++j)
      projections.push_back({layer(j), std::move(j == 0 ? d.dgate : d.dup), xa(j), adapter(j, 0), adapter(j, 1),
                             adapter(j, 2)});
    auto [gx, adapter_grads] = normed_grads(std::move(projections), std::move(n), rstd, x, w, ctx->needs_input_grad(0));
    variable_list out{gx};
    for (auto& [gA, gB] : adapter_grads) out.insert(out.end(), {gA, gB, at::Tensor()});
    out.insert(out.end(), {d.gA, d.gB, at::Tensor()});
    out.insert(out.end(), {at::Tensor(), at::Tensor(), at::Tensor()});  // w, eps, layers
    return out;
  }
};

thread_local bool t_dropout_without_graph = false;

// Inverted dropout: a mask already scaled by 1 / (1 - p), kept for the backward.
at::Tensor dropout_mask(const at::Tensor& like, double p) {
  return at::bernoulli(at::full(like.sizes(), 1.0 - p, like.options())) / (1.0 - p);
}

}  // namespace

LoraLinear::DropoutWithoutGraph::DropoutWithoutGraph() : previous(t_dropout_without_graph) {
  t_dropout_without_graph = true;
}
LoraLinear::DropoutWithoutGraph::~DropoutWithoutGraph() { t_dropout_without_graph = previous; }

at::Tensor LoraLinear::forward(const at::Tensor& x) const {
  const bool lora = has_adapter() && adapter_enabled;
  const bool need_graph = at::GradMode::is_enabled() && (x.requires_grad() || lora);
  const auto none = at::empty({0}, x.options());
  if (!need_graph) {
    // No graph is recorded; dropout only inside a checkpointed layer's first forward.
    const at::Tensor mask = lora && dropout > 0 && t_dropout_without_graph ? dropout_mask(x, dropout) : none;
    return lora_values(this, x, lora ? lora_A : none, lora ? lora_B : none, mask).y;
  }
  const at::Tensor mask = lora && dropout > 0 ? dropout_mask(x, dropout) : none;
  return QLoraFunction::apply(x, lora ? lora_A : none, lora ? lora_B : none, mask, this);
}

std::vector<at::Tensor> LoraLinear::forward_group(const std::vector<const LoraLinear*>& projections,
                                                 const at::Tensor& x) {
  bool plain = !at::GradMode::is_enabled();  // no graph, and no dropout mask to draw
  for (const auto* p : projections)
    plain = plain && !(p->has_adapter() && p->adapter_enabled && p->dropout > 0 && t_dropout_without_graph);
  std::vector<at::Tensor> ys;
  auto bases = plain ? grouped_base_products(projections, x) : std::vector<at::Tensor>{};
  if (bases.empty()) {
    for (const auto* p : projections) ys.push_back(p->forward(x));
    return ys;
  }
  const auto none = at::empty({0}, x.options());
  for (size_t i = 0; i < projections.size(); ++i) {
    const auto* p = projections[i];
    const bool lora = p->has_adapter() && p->adapter_enabled;
    LoraValues v;
    v.y = std::move(bases[i]);
    ys.push_back(lora_values_on(std::move(v), p, x, lora ? p->lora_A : none, lora ? p->lora_B : none, none).y);
  }
  return ys;
}

std::vector<at::Tensor> LoraLinear::forward_normed(const std::vector<const LoraLinear*>& projections,
                                                  const at::Tensor& x_in, const at::Tensor& norm_weight, double eps) {
  check(!projections.empty(), "LoraLinear::forward_normed: no projections");
  check(x_in.dim() >= 1 && norm_weight.dim() == 1 && norm_weight.size(0) == x_in.size(-1),
        "LoraLinear::forward_normed: the norm weight must be (hidden) for x (..., hidden)");
  check(!norm_weight.requires_grad(), "LoraLinear::forward_normed: the norm weight must be frozen");
  bool lora = false;
  for (const auto* p : projections) lora = lora || (p->has_adapter() && p->adapter_enabled);
  std::vector<at::Tensor> ys;
  if (!(at::GradMode::is_enabled() && (x_in.requires_grad() || lora))) {
    // No graph (a checkpointed layer's first forward, evaluation): what forward() computes
    // per projection, dropout masks drawn in its order, the rank-r products as the graph's
    // forward makes them.
    const auto n = fused::rms_norm(x_in, norm_weight, eps);
    const auto none = at::empty({0}, n.options());
    std::vector<at::Tensor> As, Bs, masks;
    for (const auto* p : projections) {
      const bool on = p->has_adapter() && p->adapter_enabled;
      As.push_back(on ? p->lora_A : none);
      Bs.push_back(on ? p->lora_B : none);
      masks.push_back(on && p->dropout > 0 && t_dropout_without_graph ? dropout_mask(n, p->dropout) : none);
    }
    for (auto& v : shared_input_values(projections, n, As, Bs, masks)) ys.push_back(std::move(v.y));
    return ys;
  }
  const auto x = x_in.contiguous();
  const auto w = norm_weight.to(x.scalar_type()).contiguous();
  // The masks in the order, shape and dtype forward() draws them: a checkpointed layer's
  // first forward (no graph, one forward() per projection) and its recomputation here
  // must drop the same inputs.
  const auto none = at::empty({0}, x.options());
  std::vector<at::Tensor> adapters;
  for (const auto* p : projections) {
    const bool on = p->has_adapter() && p->adapter_enabled;
    adapters.push_back(on ? p->lora_A : none);
    adapters.push_back(on ? p->lora_B : none);
    adapters.push_back(on && p->dropout > 0 ? dropout_mask(x, p->dropout) : none);
  }
  return NormedLoraFunction::apply(x, at::TensorList(adapters), w, eps, projections);
}

at::Tensor LoraLinear::forward_swiglu(const at::Tensor& gate, const at::Tensor& up) const {
  const bool lora = has_adapter() && adapter_enabled;
  const bool need_graph = at::GradMode::is_enabled() && (gate.requires_grad() || up.requires_grad() || lora);
  if (!need_graph) return forward(fused::swiglu(gate, up));
  check(gate.sizes() == up.sizes() && gate.scalar_type() == up.scalar_type(),
        "LoraLinear::forward_swiglu: gate and up differ in shape or dtype");
  const auto g = gate.contiguous(), u = up.contiguous();
  const auto none = at::empty({0}, g.options());
  const at::Tensor mask = lora && dropout > 0 ? dropout_mask(g, dropout) : none;
  return SwigluLoraFunction::apply(g, u, lora ? lora_A : none, lora ? lora_B : none, mask, this);
}

at::Tensor LoraLinear::forward_mlp(const LoraLinear& gate, const LoraLinear& up, const LoraLinear& down,
                                   const at::Tensor& x_in, const at::Tensor& norm_weight, double eps) {
  check(x_in.dim() >= 1 && norm_weight.dim() == 1 && norm_weight.size(0) == x_in.size(-1),
        "LoraLinear::forward_mlp: the norm weight must be (hidden) for x (..., hidden)");
  check(!norm_weight.requires_grad(), "LoraLinear::forward_mlp: the norm weight must be frozen");
  bool lora = false;
  for (const auto* p : {&gate, &up, &down}) lora = lora || (p->has_adapter() && p->adapter_enabled);
  if (!(at::GradMode::is_enabled() && (x_in.requires_grad() || lora))) {
    const auto gate_up = forward_normed({&gate, &up}, x_in, norm_weight, eps);
    return down.forward_swiglu(gate_up[0], gate_up[1]);
  }
  const auto x = x_in.contiguous();
  const auto w = norm_weight.to(x.scalar_type()).contiguous();
  // The masks in the order, shape and dtype forward_normed and forward_swiglu draw them.
  const auto none = at::empty({0}, x.options());
  std::vector<at::Tensor> adapters;
  for (const auto* p : {&gate, &up, &down}) {
    const bool on = p->has_adapter() && p->adapter_enabled;
    adapters.push_back(on ? p->lora_A : none);
    adapters.push_back(on ? p->lora_B : none);
    if (!(on && p->dropout > 0)) adapters.push_back(none);
    else if (p == &down) {
      auto shape = x.sizes().vec();
      shape.back() = gate.out_features();
      adapters.push_back(dropout_mask(at::empty(shape, x.options()), p->dropout));
    } else {
      adapters.push_back(dropout_mask(x, p->dropout));
    }
  }
  return MlpFunction::apply(x, at::TensorList(adapters), w, eps, std::vector<const LoraLinear*>{&gate, &up, &down});
}

}  // namespace r1dist
