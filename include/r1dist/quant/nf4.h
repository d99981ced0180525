// NF4 storage of frozen base weights, bitsandbytes-compatible: blocks of
// 64 with a per-block absmax, two 4-bit codes per byte (first element in the HIGH nibble),
// and double quantisation of the absmax (mean offset, blocks of 256, signed 8-bit dynamic map).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace r1dist::nf4 {

constexpr int64_t kBlock = 64;
constexpr int64_t kNestedBlock = 256;

// The 16 NF4 code values, index 0..15.
const std::array<float, 16>& code();
// bitsandbytes create_dynamic_map(signed=True): 256 sorted fp32 values in [-1, 1].
const std::vector<float>& dynamic_map();

struct NF4Tensor {
  std::vector<int64_t> shape;  // of the original weight, e.g. (out, in)
  int64_t numel = 0;
  at::Tensor packed;           // uint8 (ceil(numel / 2)), first element in the high nibble
  at::Tensor code;             // fp32 (16): the code book (from the file for bnb checkpoints)
  bool double_quant = true;
  at::Tensor absmax;           // fp32 (n_blocks), only when !double_quant
  at::Tensor absmax_q;         // uint8 (n_blocks): index into code8
  at::Tensor absmax_scale;     // fp32 (ceil(n_blocks / 256))
  at::Tensor code8;            // fp32 (256)
  float absmax_offset = 0.0f;  // mean of the absmax values

  int64_t n_blocks() const { return (numel + kBlock - 1) / kBlock; }
  // Bytes held on the device for this weight (codes + absmax storage + code books).
  int64_t storage_bytes() const;
  at::Device device() const { return packed.device(); }
  NF4Tensor to(at::Device d) const;
};

// Quantises any floating tensor (on its device). NaN or Inf is refused with an error naming
// `what` and the first bad flat index.
NF4Tensor quantize(const at::Tensor& w, bool double_quant = true, const std::string& what = "weight");

// The same quantisation without waiting on the device (quantize reads the mean absmax and the
// finiteness check back at once): quantize_async writes `out` with those two left in
// `pending`, so that a model load queues every weight's copy and kernels back to back; finish()
// waits once, sets each absmax_offset and throws quantize's error for the first weight, in the
// order given, that held NaN or Inf. `out` must stay where it is until then; nothing may read
// its absmax_offset before.
class PendingQuantization {
 public:
  void finish();
  size_t size() const { return items_.size(); }

 private:
  friend void quantize_async(NF4Tensor& out, const at::Tensor& w, bool double_quant, const std::string& what,
                             PendingQuantization& pending);
  struct Item {
    NF4Tensor* q;
    at::Tensor offset;     // fp32 scalar on the device (double quantisation), else undefined
    at::Tensor first_bad;  // int64 scalar on the device: the first non-finite flat index, or -1
    std::string what;
  };
  std::vector<Item> items_;
};
void quantize_async(NF4Tensor& out, const at::Tensor& w, bool double_quant, const std::string& what,
                    PendingQuantization& pending);
// The per-block absmax (fp32, n_blocks) after undoing the double quantisation.
at::Tensor absmax(const NF4Tensor& q);
// The weight in `dtype`, shape q.shape, on q's device: ATen ops on the CPU, a CUDA kernel on
// the GPU build.
at::Tensor dequantize(const NF4Tensor& q, at::ScalarType dtype);
// Reference dequantisation with ATen ops only (any device); what the CUDA kernel is tested against.
at::Tensor dequantize_reference(const NF4Tensor& q, at::ScalarType dtype);

// Few-row products for decoding (src/quant/gemv_cuda.cu): y = x W^T (+ bias) for x (..., K)
// of at most kMmaMaxRows rows in bf16 or fp16 on CUDA, W either NF4 (q) or dense in x's dtype
// (w, when q is null), each weight read once, without a dequantised copy. One row goes to
// CUDA-core kernels; from two rows on, tensor cores (mma.sync m16n8k16, the rows of x padded to
// 16; NF4 dequantised in registers to x's dtype, the values dequantize gives), unless
// mma_enabled is false (R1DIST_GEMV_MMA=0 in the environment, for benchmarks; a GPU before
// compute capability 8): then NF4 up to kGemvMaxRows rows on the CUDA-core kernel, and dense
// from two rows on cuBLAS. gemv_applies says whether the operands are ones the kernels take
// (device, dtype, rows, K a multiple of 64 for NF4 and of 8 for dense, 16-byte aligned);
// gemv_enabled is false without CUDA or with R1DIST_GEMV=0 (benchmarks compare both paths).
constexpr int64_t kMmaMaxRows = 16;
// The CUDA-core kernel's rows for NF4: at 16 (batch 16) its per-row loads of x made a 7B decode
// step 7x slower than dequantize + GEMM (docs/PERFORMANCE.md).
constexpr int64_t kGemvMaxRows = 4;
bool gemv_enabled();
bool mma_enabled();
// How the tensor-core kernels spread an N x K weight: 8 x tiles features per block, `warps`
// warps of the block splitting K by 32-column chunks (their sums added in shared memory in a
// fixed order), each warp with `chunks` chunks of a dense weight in flight. NF4 weights go by
// spans of 128 columns, each span's codes loaded one span ahead; there `chunks` sizes the
// kernel's registers for `chunks` x 8 warps per multiprocessor (2: up to 128 registers a
// thread, 4: up to 64: more warps resident to hide the loads' latency, some values perhaps
// kept in local memory). Only the plans of kMmaPlans are compiled. mma_plan picks one of them
// for an N x K weight (NF4 or dense) on a GPU of `multiprocessors`; with
// R1DIST_GEMV_MMA_PLAN=TILES,WARPS,CHUNKS in the environment (one of kMmaPlans; for
// benchmarks) decoding uses that one for every weight instead. A plan of {0, 0, 0} passed to
// gemv_cuda means the one decoding would use.
struct MmaPlan {
  int tiles = 0;
  int warps = 0;
  int chunks = 0;
};
inline bool operator==(const MmaPlan& a, const MmaPlan& b) {
  return a.tiles == b.tiles && a.warps == b.warps && a.chunks == b.chunks;
}
inline constexpr MmaPlan kMmaPlans[] = {{1, 8, 2}, {1, 8, 4}, {1, 16, 2}, {1, 16, 4}, {2, 4, 4},
                                        {2, 8, 2}, {2, 8, 4}, {2, 16, 2}, {4, 8, 2}};
MmaPlan mma_plan(int64_t N, int64_t K, int multiprocessors, bool nf4);
// "TILESxWARPSxCHUNKS", as benchmarks print a plan.
std::string to_string(const MmaPlan& p);
// The plan named by R1DIST_GEMV_MMA_PLAN, or {0, 0, 0} when it is unset; an error names the
// allowed ones when it is not one of kMmaPlans.
MmaPlan mma_plan_from_env();

// How the CUDA-core kernel spreads an N x K weight: each warp takes rows_per_warp output features (1 or
// 4: four share every load of x) over one of `splits` slices of K (1, 2, 4 or 8 warps of a
// block add their sums in shared memory). gemv_plan picks, for `rows` rows of x on a GPU of
// `multiprocessors`: four features per warp where that still makes the warps wanted (16 per
// multiprocessor at one row, 8 at more) with at most 8 splits, else one; then the fewest
// splits that reach them, with no more splits than the kernel's 16-byte steps along a row
// (32 NF4 codes or 8 dense values per lane). A plan of {0, 0} means
// gemv_plan's (benchmarks pass others to compare: `r1dist bench nf4` times every plan).
struct GemvPlan {
  int rows_per_warp = 0;
  int splits = 0;
};
GemvPlan gemv_plan(int64_t N, int64_t K, int64_t rows, bool nf4, int multiprocessors);

// Several weights of one input in one launch (decoding's q, k and v; gate and up): their
// features numbered one after the other, one plan for all (gemv_plan of their total). All NF4
// or all dense, at most kGemvMaxParts; with four features per warp each N a multiple of 4.
constexpr int64_t kGemvMaxParts = 3;
struct GemvPart {
  const NF4Tensor* q = nullptr;  // NF4 weight, or null and
  at::Tensor w;                  // the dense one
  at::Tensor bias;               // optional
};
// Whether decoding launches the weights of one input together (R1DIST_GEMV_GROUP=0 in the
// environment: one launch per weight, for benchmarks).
bool gemv_grouped();

#ifdef R1DIST_WITH_CUDA
// src/quant/nf4_cuda.cu
at::Tensor dequantize_cuda(const NF4Tensor& q, at::ScalarType dtype);
bool gemv_applies(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias);
// The plan gemv_cuda uses for these operands on x's GPU (gemv_plan with its multiprocessors).
GemvPlan gemv_plan_for(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w);
// `plan` is the CUDA-core kernel's (one row, or R1DIST_GEMV_MMA=0), `mma` the tensor cores'.
at::Tensor gemv_cuda(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias,
                     GemvPlan plan = {}, MmaPlan mma = {});
// The same for several weights of x in one launch (GemvPart); one output per part.
bool gemv_parts_apply(const at::Tensor& x, const std::vector<GemvPart>& ops);
GemvPlan gemv_plan_for(const at::Tensor& x, const std::vector<GemvPart>& ops);
// The tensor cores' plan for these operands on x's GPU (mma_plan of their total features, or
// the environment's).
MmaPlan mma_plan_for(const at::Tensor& x, const std::vector<GemvPart>& ops);
std::vector<at::Tensor> gemv_cuda_parts(const at::Tensor& x, const std::vector<GemvPart>& ops, GemvPlan plan = {},
                                        MmaPlan mma = {});
#endif

}  // namespace r1dist::nf4
