// Few-row products y = x W^T (+ b) on the GPU for decoding, where x has one row per sequence
// and each weight is read once per token: the step is bound by the bytes of W. One warp per
// output feature (or per four, for wide W) streams its weight rows with 16-byte loads and
// keeps one fp32 sum per row of x and feature; the rows of x (a few KB) come through L1. For an NF4 weight each lane takes 32 codes
// (16 bytes, half of a 64-block) and rebuilds the block's absmax in registers, so the weight
// moves as 4.5 bits instead of the 16 of a dequantised copy, which the general path writes
// and reads again for every product.
//
// Numerics: an NF4 weight is rounded to x's dtype exactly as nf4::dequantize does (code *
// absmax in fp32, absmax from its double quantisation with mul and add rounded separately),
// then multiplied in fp32; the sum is fp32 and rounded once, with the bias added before the
// rounding (as cuBLAS's epilogue). Only the order of the sum differs from dequantize + linear.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "r1dist/base/error.h"
#include "r1dist/quant/nf4.h"

namespace r1dist::nf4 {

namespace {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half(v); }

struct Nf4Args {
  const uint8_t* packed;
  const uint8_t* absmax_q;     // double quantisation (with absmax_scale, code8, offset), or
  const float* absmax_scale;
  const float* code8;
  const float* absmax_f;       // plain fp32 absmax
  float offset;
  const float* code16;
};

constexpr int kWarps = 8;  // output features per block of 256 threads

// acc[r][m] += sum_j w[r][j] * x[m, k + j] over 8 columns at k: the rows of x are loaded once
// for the R weight rows of the warp (R = 4 cuts the loads of x, which are as many bytes as
// the weight's at one row, by four).
template <typename T, int M, int R>
__device__ __forceinline__ void dot8(float (&acc)[R][M], const float (&w)[R][8], const T* __restrict__ x,
                                     int64_t K, int rows, int64_t k) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if (m >= rows) break;
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + m * K + k));
    const T* xs = reinterpret_cast<const T*>(&raw);
    float xf[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) xf[j] = to_f(xs[j]);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[r][m] = fmaf(w[r][j], xf[j], acc[r][m]);
  }
}

template <typename T, int M, int R>
__device__ __forceinline__ void finish(float (&acc)[R][M], int rows, int64_t n0, int64_t N,
                                       const T* __restrict__ bias, T* __restrict__ y) {
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
  if ((threadIdx.x & 31) != 0) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r;
    if (n >= N) break;
    const float b = bias ? to_f(bias[n]) : 0.0f;
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (m < rows) y[m * N + n] = from_f<T>(acc[r][m] + b);
  }
}

// One warp per R output features (rows n0 .. n0 + R - 1 of W).
template <typename T, int M, int R>
__global__ void __launch_bounds__(kWarps * 32) gemv_nf4_kernel(const T* __restrict__ x, int rows, int64_t K, int64_t N,
                                                              Nf4Args q, const T* __restrict__ bias, T* __restrict__ y) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = q.code16[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  // Each lane takes 32 codes (16 bytes, half a 64-block) of each of its R rows per step, U
  // steps at once: two 16-byte loads in flight at least.
  constexpr int U = R >= 2 ? 1 : 2;
  constexpr int64_t kSpan = 32 * 32;
  for (int64_t k0 = int64_t(lane) * 32; k0 < K; k0 += U * kSpan) {
    uint4 p[U][R];
    float am[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t k = k0 + u * kSpan;
        const int64_t n = n0 + r < N ? n0 + r : n0;  // a missing row repeats row n0 (not stored)
        if (k >= K) continue;
        p[u][r] = __ldg(reinterpret_cast<const uint4*>(q.packed + n * (K / 2) + k / 2));
        const int64_t blk = (n * K + k) / 64;
        am[u][r] = q.absmax_f ? q.absmax_f[blk]
                              : __fadd_rn(__fmul_rn(q.code8[q.absmax_q[blk]], q.absmax_scale[blk / 256]), q.offset);
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = k0 + u * kSpan;
      if (k >= K) break;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float w[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t word = c == 0 ? p[u][r].x : c == 1 ? p[u][r].y : c == 2 ? p[u][r].z : p[u][r].w;
#pragma unroll
          for (int b = 0; b < 4; ++b) {
            const uint32_t byte = (word >> (8 * b)) & 0xFF;
            w[r][2 * b] = to_f(from_f<T>(s_code[byte >> 4] * am[u][r]));
            w[r][2 * b + 1] = to_f(from_f<T>(s_code[byte & 15] * am[u][r]));
          }
        }
        dot8<T, M, R>(acc, w, x, K, rows, k + 8 * c);
      }
    }
  }
  finish<T, M, R>(acc, rows, n0, N, bias, y);
}

template <typename T, int M, int R>
__global__ void __launch_bounds__(kWarps * 32) gemv_dense_kernel(const T* __restrict__ x, int rows, int64_t K, int64_t N,
                                                                const T* __restrict__ W, const T* __restrict__ bias,
                                                                T* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  // U steps of 8 weights per row in flight per lane: four 16-byte loads at least.
  constexpr int U = R >= 4 ? 1 : 4 / R;
  constexpr int64_t kSpan = 32 * 8;
  for (int64_t k0 = int64_t(lane) * 8; k0 < K; k0 += U * kSpan) {
    uint4 p[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t k = k0 + u * kSpan, n = n0 + r < N ? n0 + r : n0;
        if (k < K) p[u][r] = __ldg(reinterpret_cast<const uint4*>(W + n * K + k));
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (k0 + u * kSpan >= K) break;
      float w[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const T* ws = reinterpret_cast<const T*>(&p[u][r]);
#pragma unroll
        for (int j = 0; j < 8; ++j) w[r][j] = to_f(ws[j]);
      }
      dot8<T, M, R>(acc, w, x, K, rows, k0 + u * kSpan);
    }
  }
  finish<T, M, R>(acc, rows, n0, N, bias, y);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T>
void launch(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias, at::Tensor& y,
            int64_t K, int64_t N) {
  const int rows = int(x.size(0));
  const auto* xp = reinterpret_cast<const T*>(x.data_ptr());
  const auto* bp = bias.defined() ? reinterpret_cast<const T*>(bias.data_ptr()) : nullptr;
  auto* yp = reinterpret_cast<T*>(y.data_ptr());
  auto stream = at::cuda::getCurrentCUDAStream();
  Nf4Args a{};
  if (q) {
    a.packed = q->packed.data_ptr<uint8_t>();
    a.code16 = q->code.data_ptr<float>();
    if (q->double_quant) {
      a.absmax_q = q->absmax_q.data_ptr<uint8_t>();
      a.absmax_scale = q->absmax_scale.data_ptr<float>();
      a.code8 = q->code8.data_ptr<float>();
      a.offset = q->absmax_offset;
    } else {
      a.absmax_f = q->absmax.data_ptr<float>();
    }
  }
  const T* wp = q ? nullptr : reinterpret_cast<const T*>(w.data_ptr());
  // Four rows per warp where that still gives every multiprocessor (132 on an H200) a block.
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const bool four = N >= int64_t(kWarps) * 4 * sms;
  const int64_t per_block = int64_t(kWarps) * (four ? 4 : 1);
  const dim3 grid(unsigned((N + per_block - 1) / per_block)), block(kWarps * 32);
#define R1DIST_GEMV_R(MR, RR)                                                                  \
  if (q) gemv_nf4_kernel<T, MR, RR><<<grid, block, 0, stream>>>(xp, rows, K, N, a, bp, yp);   \
  else gemv_dense_kernel<T, MR, RR><<<grid, block, 0, stream>>>(xp, rows, K, N, wp, bp, yp)
#define R1DIST_GEMV(MR)          \
  if (four) { R1DIST_GEMV_R(MR, 4); } \
  else { R1DIST_GEMV_R(MR, 1); }
  static_assert(kGemvMaxRows == 4, "one template per row count up to kGemvMaxRows");
  if (rows <= 1) { R1DIST_GEMV(1); }
  else if (rows <= 2) { R1DIST_GEMV(2); }
  else { R1DIST_GEMV(4); }
#undef R1DIST_GEMV
#undef R1DIST_GEMV_R
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw Error(std::string("few-row linear kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace

bool gemv_applies(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias) {
  if (!x.is_cuda() || x.dim() < 1 || !x.is_contiguous() || !aligned16(x.data_ptr())) return false;
  const auto dt = x.scalar_type();
  if (dt != at::kBFloat16 && dt != at::kHalf) return false;
  const int64_t K = x.size(-1);
  const int64_t rows = K > 0 ? x.numel() / K : 0;
  if (rows < 1 || rows > kGemvMaxRows) return false;
  if (bias.defined() && (bias.scalar_type() != dt || !bias.is_contiguous() || bias.device() != x.device()))
    return false;
  if (q) {
    return q->shape.size() == 2 && q->shape[1] == K && K % kBlock == 0 && q->packed.device() == x.device() &&
           aligned16(q->packed.data_ptr());
  }
  return w.defined() && w.dim() == 2 && w.size(1) == K && K % 8 == 0 && w.scalar_type() == dt && w.is_contiguous() &&
         w.device() == x.device() && aligned16(w.data_ptr());
}

at::Tensor gemv_cuda(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias) {
  check(gemv_applies(x, q, w, bias), "nf4::gemv_cuda: operands outside what the kernel takes (gemv_applies)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1), N = q ? q->shape[0] : w.size(0);
  auto out_shape = x.sizes().vec();
  out_shape.back() = N;
  auto y = at::empty(out_shape, x.options());
  if (x.scalar_type() == at::kBFloat16) launch<__nv_bfloat16>(x.view({-1, K}), q, w, bias, y, K, N);
  else launch<__half>(x.view({-1, K}), q, w, bias, y, K, N);
  return y;
}

}  // namespace r1dist::nf4
