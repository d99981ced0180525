// Few-row products y = x W^T (+ b) on the GPU for decoding, where x has one row per sequence
// and each weight is read once per token: the step is bound by the bytes of W. A warp takes R
// output features (rows of W: 1, or 4 when W has enough rows) and one of S slices of K (the
// split: S warps of a block share those features and add their sums in shared memory, so a
// W with few long rows, like down_proj, still gives every multiprocessor work). Each lane
// streams its rows with 16-byte loads and keeps one fp32 sum per row of x and feature; the
// rows of x (a few KB) come through L1, loaded once for the R features. For an NF4 weight
// each lane takes 32 codes (16 bytes, half of a 64-block): it adds code * x over them and
// multiplies that sum by the block's absmax (rebuilt in registers) once, so the weight moves
// as 4.5 bits and costs about one integer operation, a table read and one FMA per code and row
// of x.
//
// Numerics: each product is code * absmax * x in fp32 (absmax from its double quantisation
// with mul and add rounded separately, as nf4::dequantize), the sum fp32 and rounded once to
// x's dtype with the bias added before the rounding (as cuBLAS's epilogue). dequantize + linear
// rounds every weight to x's dtype first (relative 2^-9 in bf16) and sums in another order:
// those two are the only differences. The order of the sum is fixed by the plan (deterministic).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <iterator>
#include <type_traits>

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

constexpr int kWarps = 8;  // warps per block of 256 threads: kWarps / S groups of S warps

// The weights of one launch (nf4::kGemvMaxParts at most, all NF4 or all dense, of one K): their
// features are numbered one after the other (part i's start at offset[i]); with four features
// per warp each part's N is a multiple of 4, so a warp's features lie in one part.
template <typename T> struct Parts {
  Nf4Args q[nf4::kGemvMaxParts];
  const T* w[nf4::kGemvMaxParts];
  const T* bias[nf4::kGemvMaxParts];
  T* y[nf4::kGemvMaxParts];
  int64_t n[nf4::kGemvMaxParts];
  int64_t offset[nf4::kGemvMaxParts];
  int count;
};

// The part that holds feature `n0` (past the last feature: the last part, where n0 >= its N).
template <typename T> __device__ __forceinline__ int part_of(const Parts<T>& p, int64_t n0) {
  int i = 0;
#pragma unroll
  for (int j = 1; j < nf4::kGemvMaxParts; ++j)
    if (j < p.count && n0 >= p.offset[j]) i = j;
  return i;
}

// The 8 values of x's row m at column k, in fp32.
template <typename T>
__device__ __forceinline__ void load_x8(float (&xf)[8], const T* __restrict__ x, int64_t K, int m, int64_t k) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + m * K + k));
  const T* xs = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; ++j) xf[j] = to_f(xs[j]);
}

// The float at byte offset `offset` of a shared table.
__device__ __forceinline__ float table_at(const float* table, uint32_t offset) {
  return *reinterpret_cast<const float*>(reinterpret_cast<const char*>(table) + offset);
}

// The warp's sums to lane 0, then (S > 1) the S warps' sums through shared memory in the
// order of the slices, then y = sum + bias rounded once, by lane 0 of the group's first warp.
template <typename T, int M, int R>
__device__ __forceinline__ void finish(float (&acc)[R][M], int rows, int64_t n0, int64_t N, int splits, int slice,
                                       const T* __restrict__ bias, T* __restrict__ y) {
  __shared__ float s_sum[kWarps][R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (splits > 1) {
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) s_sum[warp][r][m] = acc[r][m];
    __syncthreads();
    if (lane != 0 || slice != 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float s = 0.0f;
        for (int j = 0; j < splits; ++j) s += s_sum[warp + j][r][m];
        acc[r][m] = s;
      }
  }
  if (lane != 0) return;
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

// Warp w of block b: features g .. g + R - 1 of all parts with g = (b * kWarps / S + w / S) * R,
// n0 = g - the part's offset in its own W, slice w % S of K. A feature past N repeats row n0
// (read, not stored); a warp with no feature still takes part in the block's reduction. The
// NF4 code table is the same 16 values in every NF4 weight: part 0's is read.
template <typename T, int M, int R>
__global__ void __launch_bounds__(kWarps * 32) gemv_nf4_kernel(const T* __restrict__ x, int rows, int64_t K,
                                                              int splits, const Parts<T> parts) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = parts.q[0].code16[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slice = warp % splits;
  const int64_t g = (int64_t(blockIdx.x) * (kWarps / splits) + warp / splits) * R;
  const int part = part_of(parts, g);
  const Nf4Args q = parts.q[part];
  const int64_t N = parts.n[part], n0 = g - parts.offset[part];
  const T* __restrict__ bias = parts.bias[part];
  T* __restrict__ y = parts.y[part];
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  // A lane takes 32 codes of each of its R rows per step, U steps at once: at least two
  // 16-byte loads in flight.
  constexpr int U = R >= 2 ? 1 : 2;
  const int64_t stride = int64_t(splits) * 32 * 32;
  for (int64_t k0 = (int64_t(slice) * 32 + lane) * 32; n0 < N && k0 < K; k0 += U * stride) {
    uint4 p[U][R];
    float am[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t k = k0 + u * stride;
        const int64_t n = n0 + r < N ? n0 + r : n0;
        if (k >= K) continue;
        p[u][r] = __ldg(reinterpret_cast<const uint4*>(q.packed + n * (K / 2) + k / 2));
        const int64_t blk = (n * K + k) / 64;
        am[u][r] = q.absmax_f ? q.absmax_f[blk]
                              : __fadd_rn(__fmul_rn(q.code8[q.absmax_q[blk]], q.absmax_scale[blk / 256]), q.offset);
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = k0 + u * stride;
      if (k >= K) break;
      float part[R][M];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) part[r][m] = 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float xf[M][8];
#pragma unroll
        for (int m = 0; m < M; ++m) load_x8(xf[m], x, K, m < rows ? m : 0, k + 8 * c);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t word = c == 0 ? p[u][r].x : c == 1 ? p[u][r].y : c == 2 ? p[u][r].z : p[u][r].w;
          // Each byte's two codes as byte offsets into s_code (code * 4), four bytes at once;
          // then one byte permute per code picks its offset.
          const uint32_t hi4 = (word >> 2) & 0x3C3C3C3Cu, lo4 = (word << 2) & 0x3C3C3C3Cu;
#pragma unroll
          for (int b = 0; b < 4; ++b) {
            const float hi = table_at(s_code, __byte_perm(hi4, 0, 0x4440 + b));
            const float lo = table_at(s_code, __byte_perm(lo4, 0, 0x4440 + b));
#pragma unroll
            for (int m = 0; m < M; ++m) part[r][m] = fmaf(lo, xf[m][2 * b + 1], fmaf(hi, xf[m][2 * b], part[r][m]));
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = fmaf(am[u][r], part[r][m], acc[r][m]);
    }
  }
  finish<T, M, R>(acc, rows, n0, N, splits, slice, bias, y);
}

template <typename T, int M, int R>
__global__ void __launch_bounds__(kWarps * 32) gemv_dense_kernel(const T* __restrict__ x, int rows, int64_t K,
                                                                int splits, const Parts<T> parts) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slice = warp % splits;
  const int64_t g = (int64_t(blockIdx.x) * (kWarps / splits) + warp / splits) * R;
  const int part = part_of(parts, g);
  const T* __restrict__ W = parts.w[part];
  const int64_t N = parts.n[part], n0 = g - parts.offset[part];
  const T* __restrict__ bias = parts.bias[part];
  T* __restrict__ y = parts.y[part];
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  // U steps of 8 weights per row in flight per lane: at least four 16-byte loads.
  constexpr int U = R >= 4 ? 1 : 4 / R;
  const int64_t stride = int64_t(splits) * 32 * 8;
  for (int64_t k0 = (int64_t(slice) * 32 + lane) * 8; n0 < N && k0 < K; k0 += U * stride) {
    uint4 p[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t k = k0 + u * stride, n = n0 + r < N ? n0 + r : n0;
        if (k < K) p[u][r] = __ldg(reinterpret_cast<const uint4*>(W + n * K + k));
      }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k = k0 + u * stride;
      if (k >= K) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[8];
        load_x8(xf, x, K, m < rows ? m : 0, k);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const T* ws = reinterpret_cast<const T*>(&p[u][r]);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[r][m] = fmaf(to_f(ws[j]), xf[j], acc[r][m]);
        }
      }
    }
  }
  finish<T, M, R>(acc, rows, n0, N, splits, slice, bias, y);
}

// ---- dense W, 2 to kMmaMaxRows rows of x: tensor cores
// mma.sync m16n8k16 (fp32 sums): the rows of x are the 16-row A operand (rows past `rows`
// zero), eight features of W the B operand. A block takes 8 * TILES features of one part and
// its WARPS warps split K by 32-column chunks (chunk c to warp c % WARPS; each warp loads CHUNKS
// of its chunks before their products), their sums added in shared memory in warp order
// (deterministic). Within a chunk, lane l reads 8 consecutive
// columns (16 bytes) of feature row l / 4 and the same 8 columns of x's rows l / 4 and
// l / 4 + 8, starting at column (l % 4) * 8; the chunk's two k-steps of 16 take those
// columns in a permuted order, the same for x and W, so each product is summed once.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// 16 bytes of a weight read once: not kept in L1.
__device__ __forceinline__ uint4 load_streamed(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// The warps' sums added in shared memory in warp order, the bias added, rounded once.
template <typename T, int TILES, int WARPS>
__device__ __forceinline__ void mma_finish(float (&acc)[TILES][4], int rows, int64_t n0, int64_t N,
                                           const T* __restrict__ bias, T* __restrict__ y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // acc[t][i] of lane l: row l / 4 (+ 8 for i >= 2), feature t * 8 + (l % 4) * 2 + i % 2.
  __shared__ float s_acc[WARPS][TILES * 4][32];
#pragma unroll
  for (int t = 0; t < TILES; ++t)
#pragma unroll
    for (int i = 0; i < 4; ++i) s_acc[warp][t * 4 + i][lane] = acc[t][i];
  __syncthreads();
  for (int e = threadIdx.x; e < TILES * 4 * 32; e += WARPS * 32) {
    const int ti = e / 32, l = e % 32, i = ti % 4;
    const int row = (l >> 2) + (i >= 2 ? 8 : 0);
    const int64_t n = n0 + (ti / 4) * 8 + (l & 3) * 2 + (i & 1);
    if (row >= rows || n >= N) continue;
    float sum = 0.0f;
    for (int v = 0; v < WARPS; ++v) sum += s_acc[v][ti][l];
    y[row * N + n] = from_f<T>(sum + (bias ? to_f(bias[n]) : 0.0f));
  }
}

// What every tensor-core block starts from: the lane's place in the mma operands (g = lane / 4,
// c = lane % 4), the block's part and its first feature there, the lane's two rows of x (a row
// past `rows` reads as zero: lo, hi), the sums at zero.
template <typename T, int TILES>
struct MmaBlock {
  int lane, warp, g, c, part;
  int64_t N, n0;
  bool lo, hi;
  const T* __restrict__ xlo;
  const T* __restrict__ xhi;
  float acc[TILES][4];
  __device__ __forceinline__ MmaBlock(const T* __restrict__ x, int rows, int64_t K, const Parts<T>& parts) {
    lane = threadIdx.x & 31;
    warp = threadIdx.x >> 5;
    g = lane >> 2;
    c = lane & 3;
    const int64_t first = int64_t(blockIdx.x) * 8 * TILES;
    part = part_of(parts, first);
    N = parts.n[part];
    n0 = first - parts.offset[part];
    lo = g < rows;
    hi = g + 8 < rows;
    xlo = x + int64_t(lo ? g : 0) * K;
    xhi = x + int64_t(hi ? g + 8 : 0) * K;
#pragma unroll
    for (int t = 0; t < TILES; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[t][i] = 0.0f;
  }
};

template <typename T, int TILES, int WARPS, int CHUNKS>
__global__ void __launch_bounds__(WARPS * 32) gemv_mma_kernel(const T* __restrict__ x, int rows, int64_t K,
                                                             const Parts<T> parts) {
  MmaBlock<T, TILES> b(x, rows, K, parts);
  const T* __restrict__ W = parts.w[b.part];
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  const int64_t chunks = (K + 31) / 32;
  for (int64_t ch = b.warp; ch < chunks; ch += WARPS * CHUNKS) {
    uint4 w[CHUNKS][TILES], alo[CHUNKS], ahi[CHUNKS];
#pragma unroll
    for (int u = 0; u < CHUNKS; ++u) {
      const int64_t k = (ch + u * WARPS) * 32 + b.c * 8;
      const bool in = k < K;  // K % 8 == 0: the 8 columns are whole
#pragma unroll
      for (int t = 0; t < TILES; ++t) {
        const int64_t n = b.n0 + t * 8 + b.g;
        w[u][t] = in && n < b.N ? load_streamed(W + n * K + k) : zero;
      }
      alo[u] = in && b.lo ? __ldg(reinterpret_cast<const uint4*>(b.xlo + k)) : zero;
      ahi[u] = in && b.hi ? __ldg(reinterpret_cast<const uint4*>(b.xhi + k)) : zero;
    }
#pragma unroll
    for (int u = 0; u < CHUNKS; ++u)
#pragma unroll
      for (int t = 0; t < TILES; ++t) {
        mma_16816<T>(b.acc[t], alo[u].x, ahi[u].x, alo[u].y, ahi[u].y, w[u][t].x, w[u][t].y);
        mma_16816<T>(b.acc[t], alo[u].z, ahi[u].z, alo[u].w, ahi[u].w, w[u][t].z, w[u][t].w);
      }
  }
  mma_finish<T, TILES, WARPS>(b.acc, rows, b.n0, b.N, parts.bias[b.part], parts.y[b.part]);
}

// Two floats as the bf16x2 or half2 register of an mma operand (the first in the low half).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// NF4 W, 2 to kMmaMaxRows rows of x: as gemv_mma_kernel, with the weight dequantised in
// registers (code * absmax in fp32, rounded to x's dtype: the values dequantize gives) into
// the B operand. The warps split K by spans of 128 columns; in a span lane l takes 32
// consecutive codes (16 bytes, within one 64-block: one absmax) of feature row l / 4 at column
// (l % 4) * 32 and the same 32 columns of x's rows l / 4 and l / 4 + 8; k-step j of the span's
// eight takes columns 4j .. 4j + 3 of each lane's 32 (a permutation of the span's columns, the
// same for x and W). CHUNKS x 8 warps per multiprocessor bound the registers (nf4.h).
template <typename T, int TILES, int WARPS, int CHUNKS>
__global__ void __launch_bounds__(WARPS * 32, CHUNKS * 8 / WARPS > 0 ? CHUNKS * 8 / WARPS : 1)
    gemv_mma_nf4_kernel(const T* __restrict__ x, int rows, int64_t K, const Parts<T> parts) {
  MmaBlock<T, TILES> b(x, rows, K, parts);
  const Nf4Args q = parts.q[b.part];
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  const int64_t spans = (K + 127) / 128;
  // A span's codes and the raw parts of their absmax (fp32, or the 8-bit code and the scale of
  // its group of 256 blocks), loaded one span ahead of their use.
  struct Fetched {
    uint4 codes[TILES];
    float am[TILES];  // plain absmax, or the scale
    uint32_t code8[TILES];
  };
  auto fetch = [&](int64_t sp, Fetched& f) {
    const int64_t k = sp * 128 + b.c * 32;
#pragma unroll
    for (int t = 0; t < TILES; ++t) {
      const int64_t n = b.n0 + t * 8 + b.g;
      f.codes[t] = zero;
      f.am[t] = 0.0f;
      f.code8[t] = 0u;
      if (sp < spans && k < K && n < b.N) {  // K % 64 == 0: the 32 codes are whole
        f.codes[t] = load_streamed(q.packed + n * (K / 2) + k / 2);
        const int64_t blk = (n * K + k) / 64;
        if (q.absmax_f) {
          f.am[t] = q.absmax_f[blk];
        } else {
          f.code8[t] = q.absmax_q[blk];
          f.am[t] = q.absmax_scale[blk / 256];
        }
      }
    }
  };
  // The first span's loads go out before the tables are filled.
  Fetched next;
  fetch(b.warp, next);
  // The code tables in shared memory: a double-quantised absmax is code8[absmax_q] * scale +
  // offset, and a lookup in global memory there would wait on the absmax_q load before it.
  __shared__ float s_code[16], s_code8[256];
  if (threadIdx.x < 16) s_code[threadIdx.x] = q.code16[threadIdx.x];
  if (!q.absmax_f)
    for (int i = threadIdx.x; i < 256; i += WARPS * 32) s_code8[i] = q.code8[i];
  __syncthreads();
  for (int64_t sp = b.warp; sp < spans; sp += WARPS) {
    const Fetched cur = next;
    fetch(sp + WARPS, next);
    const int64_t k = sp * 128 + b.c * 32;
    const bool in = k < K;
    // Past K the codes are zero and so is x; past N (no code loaded either) the sums are not
    // stored: what am holds there multiplies nothing that is kept.
    float am[TILES];
#pragma unroll
    for (int t = 0; t < TILES; ++t)
      am[t] = q.absmax_f ? cur.am[t] : __fadd_rn(__fmul_rn(s_code8[cur.code8[t]], cur.am[t]), q.offset);
    uint4 xl[4], xh[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      xl[i] = in && b.lo ? __ldg(reinterpret_cast<const uint4*>(b.xlo + k + 8 * i)) : zero;
      xh[i] = in && b.hi ? __ldg(reinterpret_cast<const uint4*>(b.xhi + k + 8 * i)) : zero;
    }
    const uint32_t* xlw = reinterpret_cast<const uint32_t*>(xl);
    const uint32_t* xhw = reinterpret_cast<const uint32_t*>(xh);
#pragma unroll
    for (int t = 0; t < TILES; ++t) {
      const uint32_t cw[4] = {cur.codes[t].x, cur.codes[t].y, cur.codes[t].z, cur.codes[t].w};
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {  // a word: 4 bytes, 8 codes, two k-steps
        // Each byte's two codes as byte offsets into s_code (code * 4); the high nibble first.
        const uint32_t hi4 = (cw[wd] >> 2) & 0x3C3C3C3Cu, lo4 = (cw[wd] << 2) & 0x3C3C3C3Cu;
        uint32_t bw[4];
#pragma unroll
        for (int by = 0; by < 4; ++by)
          bw[by] = pack2<T>(table_at(s_code, __byte_perm(hi4, 0, 0x4440 + by)) * am[t],
                           table_at(s_code, __byte_perm(lo4, 0, 0x4440 + by)) * am[t]);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int j = 2 * wd + h;  // k-step: columns 4j .. 4j + 3 of the lane's 32
          mma_16816<T>(b.acc[t], xlw[2 * j], xhw[2 * j], xlw[2 * j + 1], xhw[2 * j + 1], bw[2 * h], bw[2 * h + 1]);
        }
      }
    }
  }
  mma_finish<T, TILES, WARPS>(b.acc, rows, b.n0, b.N, parts.bias[b.part], parts.y[b.part]);
}

// The products of 2 rows of x or more go to tensor cores (mma_enabled, a GPU of compute
// capability 8 or later); otherwise NF4 up to kGemvMaxRows rows and dense at one row to the
// CUDA-core kernels above.
bool on_tensor_cores(int64_t rows) {
  return rows >= 2 && mma_enabled() && at::cuda::getCurrentDeviceProperties()->major >= 8;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

Nf4Args nf4_args(const NF4Tensor& q) {
  Nf4Args a{};
  a.packed = q.packed.data_ptr<uint8_t>();
  a.code16 = q.code.data_ptr<float>();
  if (q.double_quant) {
    a.absmax_q = q.absmax_q.data_ptr<uint8_t>();
    a.absmax_scale = q.absmax_scale.data_ptr<float>();
    a.code8 = q.code8.data_ptr<float>();
    a.offset = q.absmax_offset;
  } else {
    a.absmax_f = q.absmax.data_ptr<float>();
  }
  return a;
}

// The tensor-core kernel of plan `mp` (one of kMmaPlans, each compiled here).
template <typename T, size_t I = 0>
void launch_mma(const MmaPlan& mp, bool q, const T* x, int rows, int64_t K, const Parts<T>& parts, int64_t total,
                cudaStream_t stream) {
  if constexpr (I == sizeof(kMmaPlans) / sizeof(kMmaPlans[0])) {
    throw Error("few-row linear: no tensor-core kernel for plan " + to_string(mp));
  } else {
    constexpr MmaPlan p = kMmaPlans[I];
    if (!(mp == p)) return launch_mma<T, I + 1>(mp, q, x, rows, K, parts, total, stream);
    const dim3 grid(unsigned((total + 8 * p.tiles - 1) / (8 * p.tiles)));
    if (q)
      gemv_mma_nf4_kernel<T, p.tiles, p.warps, p.chunks><<<grid, p.warps * 32, 0, stream>>>(x, rows, K, parts);
    else gemv_mma_kernel<T, p.tiles, p.warps, p.chunks><<<grid, p.warps * 32, 0, stream>>>(x, rows, K, parts);
  }
}

template <typename T>
void launch(const at::Tensor& x, const std::vector<GemvPart>& ops, std::vector<at::Tensor>& ys, int64_t K,
            GemvPlan plan, MmaPlan mma) {
  const int rows = int(x.size(0));
  const auto* xp = reinterpret_cast<const T*>(x.data_ptr());
  auto stream = at::cuda::getCurrentCUDAStream();
  Parts<T> parts{};
  parts.count = int(ops.size());
  int64_t total = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& op = ops[i];
    if (op.q) parts.q[i] = nf4_args(*op.q);
    else parts.w[i] = reinterpret_cast<const T*>(op.w.data_ptr());
    parts.bias[i] = op.bias.defined() ? reinterpret_cast<const T*>(op.bias.data_ptr()) : nullptr;
    parts.y[i] = reinterpret_cast<T*>(ys[i].data_ptr());
    parts.n[i] = ys[i].size(-1);
    parts.offset[i] = total;
    total += parts.n[i];
  }
  const bool q = ops[0].q != nullptr;
  if (on_tensor_cores(rows)) {
    launch_mma<T>(mma, q, xp, rows, K, parts, total, stream);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw Error(std::string("few-row linear kernel launch failed: ") + cudaGetErrorString(err));
    return;
  }
  const int64_t per_block = int64_t(kWarps / plan.splits) * plan.rows_per_warp;
  const dim3 grid(unsigned((total + per_block - 1) / per_block)), block(kWarps * 32);
  const int S = plan.splits;
#define R1DIST_GEMV_R(MR, RR)                                                                 \
  if (q) gemv_nf4_kernel<T, MR, RR><<<grid, block, 0, stream>>>(xp, rows, K, S, parts);       \
  else gemv_dense_kernel<T, MR, RR><<<grid, block, 0, stream>>>(xp, rows, K, S, parts)
#define R1DIST_GEMV(MR)                           \
  if (plan.rows_per_warp == 4) { R1DIST_GEMV_R(MR, 4); } \
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
  if (rows < 1 || rows > kMmaMaxRows) return false;
  if (rows > (q ? kGemvMaxRows : 1) && !on_tensor_cores(rows)) return false;
  if (bias.defined() && (bias.scalar_type() != dt || !bias.is_contiguous() || bias.device() != x.device()))
    return false;
  if (q) {
    return q->shape.size() == 2 && q->shape[1] == K && K % kBlock == 0 && q->packed.device() == x.device() &&
           aligned16(q->packed.data_ptr());
  }
  return w.defined() && w.dim() == 2 && w.size(1) == K && K % 8 == 0 && w.scalar_type() == dt && w.is_contiguous() &&
         w.device() == x.device() && aligned16(w.data_ptr());
}

namespace {

int64_t features_of(const GemvPart& op) { return op.q ? op.q->shape[0] : op.w.size(0); }

}  // namespace

GemvPlan gemv_plan_for(const at::Tensor& x, const std::vector<GemvPart>& ops) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1);
  int64_t total = 0;
  for (const auto& op : ops) total += features_of(op);
  return gemv_plan(total, K, K > 0 ? x.numel() / K : 1, !ops.empty() && ops[0].q != nullptr,
                   at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
}

GemvPlan gemv_plan_for(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w) {
  return gemv_plan_for(x, {GemvPart{q, w, at::Tensor()}});
}

MmaPlan mma_plan_for(const at::Tensor& x, const std::vector<GemvPart>& ops) {
  const MmaPlan env = mma_plan_from_env();
  if (env.tiles > 0) return env;
  const c10::cuda::CUDAGuard guard(x.device());
  int64_t total = 0;
  for (const auto& op : ops) total += features_of(op);
  return mma_plan(total, x.size(-1), at::cuda::getCurrentDeviceProperties()->multiProcessorCount,
                  !ops.empty() && ops[0].q != nullptr);
}

namespace {

// A warp's (a block's, on tensor cores) features in one part: every part but the last a
// multiple of `unit` features (the last one's features past its N are computed and not stored).
bool parts_fit(const std::vector<GemvPart>& ops, int64_t unit) {
  for (size_t i = 0; i + 1 < ops.size(); ++i)
    if (features_of(ops[i]) % unit != 0) return false;
  return true;
}

}  // namespace

bool gemv_parts_apply(const at::Tensor& x, const std::vector<GemvPart>& ops) {
  if (ops.empty() || int64_t(ops.size()) > kGemvMaxParts) return false;
  for (const auto& op : ops)
    if ((op.q != nullptr) != (ops[0].q != nullptr) || !gemv_applies(x, op.q, op.w, op.bias)) return false;
  const int64_t K = x.size(-1), rows = K > 0 ? x.numel() / K : 0;
  return parts_fit(ops, on_tensor_cores(rows) ? 8 * mma_plan_for(x, ops).tiles : gemv_plan_for(x, ops).rows_per_warp);
}

std::vector<at::Tensor> gemv_cuda_parts(const at::Tensor& x, const std::vector<GemvPart>& ops, GemvPlan plan,
                                        MmaPlan mma) {
  check(gemv_parts_apply(x, ops), "nf4::gemv_cuda: operands outside what the kernel takes (gemv_parts_apply)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1);
  if (plan.rows_per_warp == 0) plan = gemv_plan_for(x, ops);
  if (mma.tiles == 0) mma = mma_plan_for(x, ops);
  check((plan.rows_per_warp == 1 || plan.rows_per_warp == 4) &&
            (plan.splits == 1 || plan.splits == 2 || plan.splits == 4 || plan.splits == 8),
        "nf4::gemv_cuda: a plan of " + std::to_string(plan.rows_per_warp) + " rows per warp and " +
            std::to_string(plan.splits) + " splits (1 or 4 rows; 1, 2, 4 or 8 splits)");
  check(std::find(std::begin(kMmaPlans), std::end(kMmaPlans), mma) != std::end(kMmaPlans),
        "nf4::gemv_cuda: tensor-core plan " + to_string(mma) + " is not one of kMmaPlans");
  const int64_t rows = K > 0 ? x.numel() / K : 0;
  check(parts_fit(ops, on_tensor_cores(rows) ? 8 * mma.tiles : plan.rows_per_warp),
        "nf4::gemv_cuda: a part before the last is not a multiple of the plan's features per " +
            std::string(on_tensor_cores(rows) ? "block" : "warp"));
  std::vector<at::Tensor> ys;
  for (const auto& op : ops) {
    auto out_shape = x.sizes().vec();
    out_shape.back() = features_of(op);
    ys.push_back(at::empty(out_shape, x.options()));
  }
  if (x.scalar_type() == at::kBFloat16) launch<__nv_bfloat16>(x.view({-1, K}), ops, ys, K, plan, mma);
  else launch<__half>(x.view({-1, K}), ops, ys, K, plan, mma);
  return ys;
}

at::Tensor gemv_cuda(const at::Tensor& x, const NF4Tensor* q, const at::Tensor& w, const at::Tensor& bias,
                     GemvPlan plan, MmaPlan mma) {
  return gemv_cuda_parts(x, {GemvPart{q, w, bias}}, plan, mma)[0];
}

}  // namespace r1dist::nf4
