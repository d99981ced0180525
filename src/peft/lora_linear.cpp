#include "r1dist/peft/lora_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "r1dist/base/error.h"
#include "r1dist/tensor/fused_ops.h"

namespace r1dist {

double LoraSpec::scaling() const { return rslora ? alpha / std::sqrt(double(r)) : alpha / double(r); }

int64_t LoraLinear::out_features() const { return quantized ? qweight.shape[0] : weight.size(0); }
int64_t LoraLinear::in_features() const { return quantized ? qweight.shape[1] : weight.size(1); }

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

// The projection's values for input x: y = x W^T (+ b) + scaling * (xd A^T) B^T with
// xd = x * mask (mask empty: no dropout); xd and xa = xd A^T are what the backward needs.
struct LoraValues {
  at::Tensor y, xd, xa;
};

LoraValues lora_values(const LoraLinear* layer, const at::Tensor& x, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& mask) {
  const auto dt = x.scalar_type();
  LoraValues v;
  {
    auto w = layer->base_weight(dt);  // dies at the end of this scope
    v.y = at::linear(x, w, bias_as(layer->bias, dt));
  }
  if (A.numel() > 0) {
    v.xd = mask.numel() > 0 ? x * mask : x;
    v.xa = at::linear(v.xd, A.to(dt));                               // (.., r)
    v.y = add_product(v.y, v.xa, B.to(dt), layer->scaling);
  }
  return v;
}

// Gradients of lora_values for output gradient g: (gx, gA, gB); gx only when asked.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lora_grads(const LoraLinear* layer, const at::Tensor& g,
                                                          const at::Tensor& xd, const at::Tensor& xa,
                                                          const at::Tensor& A, const at::Tensor& B,
                                                          const at::Tensor& mask, bool need_gx) {
  const bool lora = A.numel() > 0;
  const auto dt = g.scalar_type();
  at::Tensor gx, gA, gB, gxa;
  if (lora) gxa = at::matmul(g, B.to(dt)) * layer->scaling;      // (.., r)
  if (need_gx) {
    gx = at::matmul(g, layer->base_weight(dt));                  // re-dequantised, transient
    if (lora) gx = mask.numel() > 0 ? gx + at::matmul(gxa, A.to(dt)) * mask : add_product(gx, gxa, A.to(dt).t(), 1.0);
  }
  if (lora) {
    const int64_t r = A.size(0);
    auto g2 = g.reshape({-1, g.size(-1)});
    gB = at::matmul(g2.t(), xa.reshape({-1, r})).to(B.scalar_type()) * layer->scaling;  // (out, r)
    gA = at::matmul(gxa.reshape({-1, r}).t(), xd.reshape({-1, xd.size(-1)})).to(A.scalar_type());  // (r, in)
  }
  return {gx, gA, gB};
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
    ctx->save_for_backward({v.xd, v.xa, A, B, mask});
    return v.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* layer = reinterpret_cast<const LoraLinear*>(ctx->saved_data["layer"].toInt());
    auto s = ctx->get_saved_variables();
    auto [gx, gA, gB] = lora_grads(layer, grads[0], s[0], s[1], s[2], s[3], s[4], ctx->needs_input_grad(0));
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
    ctx->save_for_backward({gate, up, v.xa, A, B, mask});
    return v.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* layer = reinterpret_cast<const LoraLinear*>(ctx->saved_data["layer"].toInt());
    auto s = ctx->get_saved_variables();
    const auto &gate = s[0], &up = s[1], &xa = s[2], &A = s[3], &B = s[4], &mask = s[5];
    at::Tensor xd;
    if (A.numel() > 0) {
      const auto p = fused::swiglu_values(gate, up);
      xd = mask.numel() > 0 ? p * mask : p;
    }
    auto [gp, gA, gB] = lora_grads(layer, grads[0], xd, xa, A, B, mask, true);
    auto [dgate, dup] = fused::swiglu_grads(gp.contiguous(), gate, up);
    return {dgate, dup, gA, gB, at::Tensor(), at::Tensor()};
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

}  // namespace r1dist
