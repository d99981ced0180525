#include "r1dist/peft/lora_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "r1dist/base/error.h"

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

// Inputs: x (.., in), A (r, in) fp32, B (out, r) fp32, dropout mask (.., in). An absent
// adapter or mask is an EMPTY tensor, not an undefined one (libtorch 1.13 cannot take
// undefined inputs). The frozen base travels as a pointer in saved_data: it is not a
// differentiable input.
struct QLoraFunction : public torch::autograd::Function<QLoraFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& A,
                            const at::Tensor& B, const at::Tensor& mask, const LoraLinear* layer) {
    const auto dt = x.scalar_type();
    at::Tensor y;
    {
      auto w = layer->base_weight(dt);  // dies at the end of this scope
      y = at::linear(x, w, bias_as(layer->bias, dt));
    }
    at::Tensor xd, xa;
    const bool lora = A.numel() > 0;
    if (lora) {
      xd = mask.numel() > 0 ? x * mask : x;
      xa = at::linear(xd, A.to(dt));                               // (.., r)
      y = add_product(y, xa, B.to(dt), layer->scaling);
    }
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["lora"] = lora;
    ctx->save_for_backward({xd, xa, A, B, mask});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* layer = reinterpret_cast<const LoraLinear*>(ctx->saved_data["layer"].toInt());
    const bool lora = ctx->saved_data["lora"].toBool();
    auto saved = ctx->get_saved_variables();
    auto &xd = saved[0], &xa = saved[1], &A = saved[2], &B = saved[3], &mask = saved[4];
    const auto& g = grads[0];                                     // (.., out)
    const auto dt = g.scalar_type();
    at::Tensor gx, gA, gB;
    at::Tensor gxa;
    if (lora) gxa = at::matmul(g, B.to(dt)) * layer->scaling;      // (.., r)
    if (ctx->needs_input_grad(0)) {
      gx = at::matmul(g, layer->base_weight(dt));                  // re-dequantised, transient
      if (lora) gx = mask.numel() > 0 ? gx + at::matmul(gxa, A.to(dt)) * mask : add_product(gx, gxa, A.to(dt).t(), 1.0);
    }
    if (lora) {
      const int64_t r = A.size(0);
      auto g2 = g.reshape({-1, g.size(-1)});
      gB = at::matmul(g2.t(), xa.reshape({-1, r})).to(B.scalar_type()) * layer->scaling;  // (out, r)
      gA = at::matmul(gxa.reshape({-1, r}).t(), xd.reshape({-1, xd.size(-1)})).to(A.scalar_type());  // (r, in)
    }
    return {gx, gA, gB, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

namespace {
thread_local bool t_dropout_without_graph = false;
}  // namespace

LoraLinear::DropoutWithoutGraph::DropoutWithoutGraph() : previous(t_dropout_without_graph) {
  t_dropout_without_graph = true;
}
LoraLinear::DropoutWithoutGraph::~DropoutWithoutGraph() { t_dropout_without_graph = previous; }

at::Tensor LoraLinear::forward(const at::Tensor& x) const {
  const bool lora = has_adapter() && adapter_enabled;
  const bool need_graph = at::GradMode::is_enabled() && (x.requires_grad() || lora);
  if (!need_graph) {
    auto y = at::linear(x, base_weight(x.scalar_type()), bias_as(bias, x.scalar_type()));
    if (lora) {
      at::Tensor xd = x;
      if (dropout > 0 && t_dropout_without_graph)
        xd = x * (at::bernoulli(at::full(x.sizes(), 1.0 - dropout, x.options())) / (1.0 - dropout));
      auto xa = at::linear(xd, lora_A.to(x.scalar_type()));
      y = add_product(y, xa, lora_B.to(x.scalar_type()), scaling);
    }
    return y;
  }
  const auto none = at::empty({0}, x.options());
  at::Tensor mask = none;
  if (lora && dropout > 0) {
    // Inverted dropout; the mask (already scaled by 1/(1-p)) is kept for the backward.
    mask = at::bernoulli(at::full(x.sizes(), 1.0 - dropout, x.options())) / (1.0 - dropout);
  }
  return QLoraFunction::apply(x, lora ? lora_A : none, lora ? lora_B : none, mask, this);
}

}  // namespace r1dist
