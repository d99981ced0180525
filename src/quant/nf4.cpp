#include "r1dist/quant/nf4.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "r1dist/base/env.h"
#include "r1dist/base/error.h"

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
  // bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
  // exponent i in 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times +-10^(i-6), then
  // 0 and 1, sorted. The values are fixed here as PyTorch 2.11 computes them (the torch that
  // bitsandbytes runs on; tools/reference/make_nf4_fixture.py, checked by a test): libtorch
  // 1.13's float32 linspace differs in the last bit for a few entries.
  static const std::vector<float> m = {
      -0.992968738079071f, -0.9789062738418579f, -0.96484375f, -0.9507812261581421f,
      -0.936718761920929f, -0.922656238079071f, -0.9085937738418579f, -0.89453125f,
      -0.8804687261581421f, -0.866406261920929f, -0.852343738079071f, -0.8382812738418579f,
      -0.82421875f, -0.8101562261581421f, -0.796093761920929f, -0.782031238079071f,
      -0.7679687738418579f, -0.75390625f, -0.7398437261581421f, -0.725781261920929f,
      -0.7117187976837158f, -0.6976562738418579f, -0.68359375f, -0.6695312261581421f,
      -0.655468761920929f, -0.6414062976837158f, -0.6273437738418579f, -0.61328125f,
      -0.5992187261581421f, -0.585156261920929f, -0.5710937976837158f, -0.5570312738418579f,
      -0.54296875f, -0.5289062261581421f, -0.5148437023162842f, -0.500781238079071f,
      -0.48671871423721313f, -0.47265625f, -0.4585937261581421f, -0.44453126192092896f,
      -0.43046873807907104f, -0.4164062440395355f, -0.40234375f, -0.3882812261581421f,
      -0.37421876192092896f, -0.36015623807907104f, -0.3460937440395355f, -0.33203125f,
      -0.3179687261581421f, -0.30390626192092896f, -0.28984373807907104f, -0.2757812738418579f,
      -0.26171875f, -0.24765624105930328f, -0.23359374701976776f, -0.21953125298023224f,
      -0.20546874403953552f, -0.19140625f, -0.17734375596046448f, -0.16328124701976776f,
      -0.14921875298023224f, -0.13515624403953552f, -0.12109375f, -0.10703125596046448f,
      -0.09859374910593033f, -0.09578125923871994f, -0.09296875447034836f, -0.09015624970197678f,
      -0.08734375238418579f, -0.08453124761581421f, -0.08171875774860382f, -0.07890625298023224f,
      -0.07609374821186066f, -0.07328125089406967f, -0.07046874612569809f, -0.0676562562584877f,
      -0.06484375149011612f, -0.062031250447034836f, -0.05921875312924385f, -0.05640624836087227f,
      -0.053593751043081284f, -0.05078125f, -0.047968748956918716f, -0.04515625163912773f,
      -0.04234374687075615f, -0.039531249552965164f, -0.03671875223517418f, -0.033906251192092896f,
      -0.031093750149011612f, -0.028281250968575478f, -0.025468749925494194f, -0.02265625074505806f,
      -0.019843751564621925f, -0.017031250521540642f, -0.014218750409781933f, -0.011406250298023224f,
      -0.009718749672174454f, -0.009156249463558197f, -0.008593750186264515f, -0.008031249977648258f,
      -0.0074687497690320015f, -0.006906250026077032f, -0.006343749817460775f, -0.005781250074505806f,
      -0.0052187503315508366f, -0.0046562496572732925f, -0.004093749914318323f, -0.0035312497057020664f,
      -0.002968749962747097f, -0.002406249986961484f, -0.001843750011175871f, -0.001281249918974936f,
      -0.0009437500848434865f, -0.0008312499849125743f, -0.0007187500596046448f, -0.0006062500760890543f,
      -0.000493750034365803f, -0.0003812500217463821f, -0.0002687500382307917f, -0.00015625001105945557f,
      -8.874999912222847e-05f, -6.625000241911039e-05f, -4.374999844003469e-05f, -2.1249998098937795e-05f,
      -7.749999895168003e-06f, -3.250000190746505e-06f, -5.500000384017767e-07f, 0.0f,
      5.500000384017767e-07f, 3.250000190746505e-06f, 7.749999895168003e-06f, 2.1249998098937795e-05f,
      4.374999844003469e-05f, 6.625000241911039e-05f, 8.874999912222847e-05f, 0.00015625001105945557f,
      0.0002687500382307917f, 0.0003812500217463821f, 0.000493750034365803f, 0.0006062500760890543f,
      0.0007187500596046448f, 0.0008312499849125743f, 0.0009437500848434865f, 0.001281249918974936f,
      0.001843750011175871f, 0.002406249986961484f, 0.002968749962747097f, 0.0035312497057020664f,
      0.004093749914318323f, 0.0046562496572732925f, 0.0052187503315508366f, 0.005781250074505806f,
      0.006343749817460775f, 0.006906250026077032f, 0.0074687497690320015f, 0.008031249977648258f,
      0.008593750186264515f, 0.009156249463558197f, 0.009718749672174454f, 0.011406250298023224f,
      0.014218750409781933f, 0.017031250521540642f, 0.019843751564621925f, 0.02265625074505806f,
      0.025468749925494194f, 0.028281250968575478f, 0.031093750149011612f, 0.033906251192092896f,
      0.03671875223517418f, 0.039531249552965164f, 0.04234374687075615f, 0.04515625163912773f,
      0.047968748956918716f, 0.05078125f, 0.053593751043081284f, 0.05640624836087227f,
      0.05921875312924385f, 0.062031250447034836f, 0.06484375149011612f, 0.0676562562584877f,
      0.07046874612569809f, 0.07328125089406967f, 0.07609374821186066f, 0.07890625298023224f,
      0.08171875774860382f, 0.08453124761581421f, 0.08734375238418579f, 0.09015624970197678f,
      0.09296875447034836f, 0.09578125923871994f, 0.09859374910593033f, 0.10703125596046448f,
      0.12109375f, 0.13515624403953552f, 0.14921875298023224f, 0.16328124701976776f,
      0.17734375596046448f, 0.19140625f, 0.20546874403953552f, 0.21953125298023224f,
      0.23359374701976776f, 0.24765624105930328f, 0.26171875f, 0.2757812738418579f,
      0.28984373807907104f, 0.30390626192092896f, 0.3179687261581421f, 0.33203125f,
      0.3460937440395355f, 0.36015623807907104f, 0.37421876192092896f, 0.3882812261581421f,
      0.40234375f, 0.4164062440395355f, 0.43046873807907104f, 0.44453126192092896f,
      0.4585937261581421f, 0.47265625f, 0.48671871423721313f, 0.500781238079071f,
      0.5148437023162842f, 0.5289062261581421f, 0.54296875f, 0.5570312738418579f,
      0.5710937976837158f, 0.585156261920929f, 0.5992187261581421f, 0.61328125f,
      0.6273437738418579f, 0.6414062976837158f, 0.655468761920929f, 0.6695312261581421f,
      0.68359375f, 0.6976562738418579f, 0.7117187976837158f, 0.725781261920929f,
      0.7398437261581421f, 0.75390625f, 0.7679687738418579f, 0.782031238079071f,
      0.796093761920929f, 0.8101562261581421f, 0.82421875f, 0.8382812738418579f,
      0.852343738079071f, 0.866406261920929f, 0.8804687261581421f, 0.89453125f,
      0.9085937738418579f, 0.922656238079071f, 0.936718761920929f, 0.9507812261581421f,
      0.96484375f, 0.9789062738418579f, 0.992968738079071f, 1.0f,
  };
  return m;
}

namespace {

// The code books as fp32 tensors on device `d`, made once per device and shared by every
// NF4Tensor quantised there (read-only). Made anew, each one would be a copy from pageable host
// memory, which waits for the device's queue: three waits per weight in a model load. The
// cache lives as long as the process (never destroyed: no device memory freed after the CUDA
// runtime has gone at exit).
const at::Tensor& cached_table(at::Device d, bool nested) {
  static std::mutex m;
  static auto* tables = new std::map<std::pair<std::string, bool>, at::Tensor>();
  std::lock_guard<std::mutex> lk(m);
  auto& t = (*tables)[{d.str(), nested}];
  if (!t.defined()) {
    t = nested ? at::tensor(dynamic_map(), at::kFloat)
               : at::tensor(std::vector<float>(code().begin(), code().end()), at::kFloat);
    t = t.to(d);
  }
  return t;
}

at::Tensor code_tensor(at::Device d) { return cached_table(d, false); }

// Index of the nearest value of the sorted `book` for each x (ties to the lower index):
// the count of midpoints strictly below x, i.e. bitsandbytes' strict '>'
// thresholds between code values.
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

namespace {

// quantize's work with nothing read back: the NF4 tensor (absmax_offset unset), the mean
// absmax as an fp32 scalar on the device (double quantisation) and the first non-finite flat
// index (-1: none), an int64 scalar there.
struct Quantized {
  NF4Tensor q;
  at::Tensor offset, first_bad;
};

Quantized quantize_on_device(const at::Tensor& w, bool double_quant, const std::string& what) {
  check(w.is_floating_point(), "NF4: " + what + " is not a floating-point tensor");
  Quantized r;
  NF4Tensor& q = r.q;
  q.shape = w.sizes().vec();
  q.numel = w.numel();
  q.double_quant = double_quant;
  auto x = w.detach().reshape({-1}).to(at::kFloat);
  const auto bad = x.isfinite().logical_not();
  r.first_bad = q.numel == 0 ? at::full({}, -1, x.options().dtype(at::kLong))
                             : bad.any().to(at::kLong) * (bad.to(at::kByte).argmax() + 1) - 1;
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
    return r;
  }
  // The offset is summed in double so that it does not depend on the reduction order, then
  // rounded to fp32 (the stored value).
  r.offset = amax.to(at::kDouble).mean().to(at::kFloat);
  auto centred = amax - r.offset;
  const int64_t nb2 = (nb + kNestedBlock - 1) / kNestedBlock;
  auto c2 = at::constant_pad_nd(centred, {0, nb2 * kNestedBlock - nb}, 0.0).view({nb2, kNestedBlock});
  auto scale = c2.abs().amax(1);
  auto safe2 = at::where(scale > 0, scale, at::ones_like(scale));
  q.code8 = cached_table(x.device(), true);
  q.absmax_q = nearest(c2 / safe2.unsqueeze(1), q.code8).to(at::kByte).reshape({-1}).slice(0, 0, nb).contiguous();
  q.absmax_scale = scale.contiguous();
  return r;
}

Error non_finite(const std::string& what, int64_t first) {
  return Error("NF4: " + what + " holds NaN or Inf (first at flat index " + std::to_string(first) +
               "); refusing to quantise");
}

}  // namespace

NF4Tensor quantize(const at::Tensor& w, bool double_quant, const std::string& what) {
  NF4Tensor out;
  PendingQuantization pending;
  quantize_async(out, w, double_quant, what, pending);
  pending.finish();
  return out;
}

void quantize_async(NF4Tensor& out, const at::Tensor& w, bool double_quant, const std::string& what,
                    PendingQuantization& pending) {
  auto r = quantize_on_device(w, double_quant, what);
  out = std::move(r.q);
  pending.items_.push_back({&out, r.offset, r.first_bad, what});
}

void PendingQuantization::finish() {
  if (items_.empty()) return;
  // One read back for all: the first bad indices, then the offsets (NaN where none).
  const auto dev = items_[0].first_bad.device();
  std::vector<at::Tensor> bad, offsets;
  for (const auto& it : items_) {
    bad.push_back(it.first_bad.reshape({1}).to(dev));
    offsets.push_back(it.offset.defined() ? it.offset.reshape({1}).to(dev)
                                          : at::full({1}, NAN, it.first_bad.options().dtype(at::kFloat).device(dev)));
  }
  const auto bad_host = at::cat(bad).cpu();
  const auto off_host = at::cat(offsets).cpu();
  const auto items = std::move(items_);
  items_.clear();
  const auto* b = bad_host.data_ptr<int64_t>();
  for (size_t i = 0; i < items.size(); ++i)
    if (b[i] >= 0) throw non_finite(items[i].what, b[i]);
  const auto* o = off_host.data_ptr<float>();
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].offset.defined()) items[i].q->absmax_offset = o[i];
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

GemvPlan gemv_plan(int64_t N, int64_t K, int64_t rows, bool nf4, int multiprocessors) {
  check(N > 0 && K > 0 && rows > 0 && multiprocessors > 0, "nf4::gemv_plan: empty shape or no multiprocessors");
  // Warps wanted: 16 per multiprocessor at one row of x, 8 at more (each does more per load).
  const int64_t target = int64_t(multiprocessors) * (rows == 1 ? 16 : 8);
  const int64_t span = (nf4 ? 32 : 8) * 32;                   // one warp's step along a row
  const int64_t steps = (K + span - 1) / span;
  auto splits_for = [&](int64_t features) {
    int s = 1;
    while (s < 8 && 2 * s <= steps && features * s < target) s *= 2;
    return s;
  };
  const int64_t four = (N + 3) / 4;
  const int s4 = splits_for(four);
  if (four * s4 >= target) return {4, s4};
  return {1, splits_for(N)};
}

bool gemv_grouped() {
  static const bool on = !env_is("R1DIST_GEMV_GROUP", "0");
  return on && gemv_enabled();
}

MmaPlan mma_plan(int64_t N, int64_t K, int multiprocessors, bool nf4) {
  check(N > 0 && K > 0 && multiprocessors > 0, "nf4::mma_plan: no features, no columns or no multiprocessors");
  // Measured per 7B projection on an H100 (docs/PERFORMANCE.md): dense weights are fastest on
  // one tile and 8 warps, with four chunks in flight, or two on long rows (down_proj: K of
  // 8,192 or more); NF4 ones, bound by dequantising in registers, on two tiles (each x load
  // serving 16 features) where that still gives every multiprocessor a block, else one, with
  // registers for two blocks of 8 warps per multiprocessor (chunks 2: the plans held to 64
  // registers for four blocks measured slower).
  if (nf4) return {(N + 15) / 16 >= int64_t(multiprocessors) ? 2 : 1, 8, 2};
  return {1, 8, K >= 8192 ? 2 : 4};
}

std::string to_string(const MmaPlan& p) {
  return std::to_string(p.tiles) + "x" + std::to_string(p.warps) + "x" + std::to_string(p.chunks);
}

MmaPlan mma_plan_from_env() {
  static const MmaPlan plan = [] {
    const char* v = std::getenv("R1DIST_GEMV_MMA_PLAN");
    if (!v || !*v) return MmaPlan{};
    MmaPlan p;
    char tail = 0;
    std::string allowed;
    for (const auto& k : kMmaPlans) {
      allowed += (allowed.empty() ? "" : ", ") + std::to_string(k.tiles) + "," + std::to_string(k.warps) + "," +
                 std::to_string(k.chunks);
      if (std::sscanf(v, "%d,%d,%d%c", &p.tiles, &p.warps, &p.chunks, &tail) == 3 && p == k) return p;
    }
    throw Error(std::string("R1DIST_GEMV_MMA_PLAN=") + v + ": not a compiled plan TILES,WARPS,CHUNKS (" + allowed +
                ")");
  }();
  return plan;
}

bool mma_enabled() {
  static const bool on = !env_is("R1DIST_GEMV_MMA", "0");
  return on && gemv_enabled();
}

bool gemv_enabled() {
#ifdef R1DIST_WITH_CUDA
  static const bool on = !env_is("R1DIST_GEMV", "0");
  return on;
#else
  return false;
#endif
}

}  // namespace r1dist::nf4
