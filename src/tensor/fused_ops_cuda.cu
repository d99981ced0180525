// CUDA kernels of tensor/fused_ops.h: each pass of RMSNorm, RoPE and SwiGLU is one
// memory-bound kernel that reads its operands once and writes its result once, computing in
// fp32 and rounding once. Loads and stores are 16-byte vectors where the sizes and the
// addresses allow (Vec), element by element otherwise.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "tensor/fused_ops_cuda.h"
#include "r1dist/base/error.h"

namespace r1dist::fused::cuda {

namespace {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half(v); }
// Rounded to T and back: the value the plain form holds after a cast to the compute dtype.
template <typename T> __device__ __forceinline__ float round_as(float v) { return to_f(from_f<T>(v)); }

template <typename T, int N> struct alignas(sizeof(T) * N) Vec {
  T v[N];
};
template <typename T, int N> __device__ __forceinline__ Vec<T, N> load(const T* p, int64_t i) {
  return reinterpret_cast<const Vec<T, N>*>(p)[i];
}
template <typename T, int N> __device__ __forceinline__ void store(T* p, int64_t i, const Vec<T, N>& v) {
  reinterpret_cast<Vec<T, N>*>(p)[i] = v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? part[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) part[0] = v;
  }
  __syncthreads();
  const float total = part[0];
  __syncthreads();  // part is reused by the next call
  return total;
}

// ---- RMSNorm: one block per row. With Add, the row normed is x + delta (rounded to T, as
// the sum of two tensors), written to `sum` first: each thread reads back only what it wrote.
template <typename T, int N, bool Add>
__global__ void rms_forward_kernel(const T* __restrict__ x, const T* __restrict__ delta, T* __restrict__ sum,
                                   const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd, int64_t h,
                                   float eps) {
  const int64_t row = blockIdx.x, nv = h / N;
  const T* xr = Add ? sum + row * h : x + row * h;
  T* yr = y + row * h;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    auto xv = load<T, N>(x + row * h, i);
    if (Add) {
      const auto dv = load<T, N>(delta + row * h, i);
#pragma unroll
      for (int j = 0; j < N; ++j) xv.v[j] = from_f<T>(to_f(xv.v[j]) + to_f(dv.v[j]));
      store<T, N>(sum + row * h, i, xv);
    }
#pragma unroll
    for (int j = 0; j < N; ++j) ss += to_f(xv.v[j]) * to_f(xv.v[j]);
  }
  const float r = rsqrtf(block_sum(ss) / float(h) + eps);
  if (threadIdx.x == 0 && rstd) rstd[row] = r;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const auto xv = load<T, N>(xr, i);
    const auto wv = load<T, N>(w, i);
    Vec<T, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = from_f<T>(to_f(wv.v[j]) * round_as<T>(to_f(xv.v[j]) * r));
    store<T, N>(yr, i, out);
  }
}

template <typename T, int N>
__global__ void rms_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                                    const float* __restrict__ rstd, T* __restrict__ dx, int64_t h) {
  const int64_t row = blockIdx.x, nv = h / N;
  const T* dyr = dy + row * h;
  const T* xr = x + row * h;
  const float r = rstd[row];
  float dot = 0.f;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const auto gv = load<T, N>(dyr, i), xv = load<T, N>(xr, i), wv = load<T, N>(w, i);
#pragma unroll
    for (int j = 0; j < N; ++j) dot += to_f(gv.v[j]) * to_f(wv.v[j]) * to_f(xv.v[j]) * r;
  }
  const float mean_gn = block_sum(dot) / float(h);
  T* dxr = dx + row * h;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const auto gv = load<T, N>(dyr, i), xv = load<T, N>(xr, i), wv = load<T, N>(w, i);
    Vec<T, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float g = to_f(gv.v[j]) * to_f(wv.v[j]), n = to_f(xv.v[j]) * r;
      out.v[j] = from_f<T>(r * (g - n * mean_gn));
    }
    store<T, N>(dxr, i, out);
  }
}

// ---- RoPE: the N values of the first half starting at x1 and their partners x2 (d + D/2),
// with the table values of the same columns; forward y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2,
// backward dx1 = dy1 c1 + dy2 s2, dx2 = dy2 c2 - dy1 s1, in fp32, rounded to T once.
template <typename T, int N>
__device__ __forceinline__ void rope_pair(const Vec<T, N>& x1, const Vec<T, N>& x2, const Vec<T, N>& c1,
                                          const Vec<T, N>& c2, const Vec<T, N>& s1, const Vec<T, N>& s2,
                                          bool backward, Vec<T, N>& y1, Vec<T, N>& y2) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float a = to_f(x1.v[j]), b2 = to_f(x2.v[j]);
    // Each product rounded, then the sum (no fused multiply-add): ATen's order, and the same
    // bits in every kernel that calls this, whatever the compiler would contract.
    if (!backward) {
      y1.v[j] = from_f<T>(__fsub_rn(__fmul_rn(a, to_f(c1.v[j])), __fmul_rn(b2, to_f(s1.v[j]))));
      y2.v[j] = from_f<T>(__fadd_rn(__fmul_rn(b2, to_f(c2.v[j])), __fmul_rn(a, to_f(s2.v[j]))));
    } else {
      y1.v[j] = from_f<T>(__fadd_rn(__fmul_rn(a, to_f(c1.v[j])), __fmul_rn(b2, to_f(s2.v[j]))));
      y2.v[j] = from_f<T>(__fsub_rn(__fmul_rn(b2, to_f(c2.v[j])), __fmul_rn(a, to_f(s1.v[j]))));
    }
  }
}

// RoPE over x (B, T, heads, D): one thread per N consecutive d of the first half and their
// partners d + D/2. cos, sin (Bc, T, D) with Bc = 1 (shared) or B.
template <typename T, int N>
__global__ void rope_kernel(const T* __restrict__ x, const T* __restrict__ cos, const T* __restrict__ sin,
                            T* __restrict__ y, int64_t work, int64_t t_len, int64_t heads, int64_t d,
                            bool shared_table, bool backward) {
  const int64_t half = d / 2, hv = half / N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < work; idx += stride) {
    const int64_t dv = idx % hv;
    int64_t rest = idx / hv;
    rest /= heads;  // (b * T + t)
    const int64_t t = rest % t_len, b = rest / t_len;
    const int64_t xo = (idx / hv) * d + dv * N;  // ((b * T + t) * heads + head) * D + first d
    const int64_t co = ((shared_table ? 0 : b) * t_len + t) * d + dv * N;
    Vec<T, N> y1, y2;
    rope_pair<T, N>(load<T, N>(x + xo, 0), load<T, N>(x + xo + half, 0), load<T, N>(cos + co, 0),
                    load<T, N>(cos + co + half, 0), load<T, N>(sin + co, 0), load<T, N>(sin + co + half, 0),
                    backward, y1, y2);
    store<T, N>(y + xo, 0, y1);
    store<T, N>(y + xo + half, 0, y2);
  }
}

// Decoding's RoPE and cache write: one thread per N consecutive d of the first half (and their
// partners) of one head of q, k or v of one sequence. q (B, Hq * D), k and v (B, Hkv * D),
// cos, sin (Bc, D); q and k rotated as rope_kernel does, q to y (B, Hq, D), k and v into column
// *column of the caches (B, Hkv, C, D).
template <typename T, int N>
__global__ void rope_into_cache_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                       const T* __restrict__ cos, const T* __restrict__ sin, bool shared_table,
                                       T* __restrict__ y, T* __restrict__ kc, T* __restrict__ vc,
                                       const int64_t* __restrict__ column, int64_t batch, int64_t hq, int64_t hkv,
                                       int64_t capacity, int64_t d) {
  const int64_t half = d / 2, hv = half / N, heads = hq + 2 * hkv, work = batch * heads * hv;
  const int64_t col = *column;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < work; idx += stride) {
    const int64_t dv = idx % hv, head = (idx / hv) % heads, b = idx / hv / heads;
    const T* src;
    T* dst;
    if (head < hq) {
      src = q + (b * hq + head) * d;
      dst = y + (b * hq + head) * d;
    } else {
      const int64_t h = head < hq + hkv ? head - hq : head - hq - hkv;
      src = (head < hq + hkv ? k : v) + (b * hkv + h) * d;
      dst = (head < hq + hkv ? kc : vc) + ((b * hkv + h) * capacity + col) * d;
    }
    const auto x1 = load<T, N>(src + dv * N, 0), x2 = load<T, N>(src + half + dv * N, 0);
    Vec<T, N> y1 = x1, y2 = x2;
    if (head < hq + hkv) {
      const int64_t co = (shared_table ? 0 : b) * d + dv * N;
      rope_pair<T, N>(x1, x2, load<T, N>(cos + co, 0), load<T, N>(cos + co + half, 0), load<T, N>(sin + co, 0),
                      load<T, N>(sin + co + half, 0), false, y1, y2);
    }
    store<T, N>(dst + dv * N, 0, y1);
    store<T, N>(dst + half + dv * N, 0, y2);
  }
}

// ---- SwiGLU, elementwise over n / N vectors.
template <typename T, int N>
__global__ void swiglu_forward_kernel(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ y,
                                      int64_t nv) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nv; i += stride) {
    const auto gv = load<T, N>(g, i), uv = load<T, N>(u, i);
    Vec<T, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float a = to_f(gv.v[j]);
      out.v[j] = from_f<T>(a / (1.f + expf(-a)) * to_f(uv.v[j]));
    }
    store<T, N>(y, i, out);
  }
}

template <typename T, int N>
__global__ void swiglu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ g, const T* __restrict__ u,
                                       T* __restrict__ dg, T* __restrict__ du, int64_t nv) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nv; i += stride) {
    const auto dv = load<T, N>(dy, i), gv = load<T, N>(g, i), uv = load<T, N>(u, i);
    Vec<T, N> og, ou;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float a = to_f(gv.v[j]), d = to_f(dv.v[j]), s = 1.f / (1.f + expf(-a));
      og.v[j] = from_f<T>(d * to_f(uv.v[j]) * s * (1.f + a * (1.f - s)));
      ou.v[j] = from_f<T>(d * a * s);
    }
    store<T, N>(dg, i, og);
    store<T, N>(du, i, ou);
  }
}

// ---- Cross-entropy over logits (rows, V). The log-sum-exp: one block per row, each thread
// a running (max, sum of exp(x - max)) over its elements, merged over the block.
struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

template <typename T, int N>
__global__ void logsumexp_kernel(const T* __restrict__ logits, const int64_t* __restrict__ target,
                                 float* __restrict__ lse, float* __restrict__ picked, int64_t v) {
  const int64_t row = blockIdx.x, nv = v / N;
  const T* xr = logits + row * v;
  MaxSum acc{-INFINITY, 0.f};
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const auto xv = load<T, N>(xr, i);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float x = to_f(xv.v[j]);
      if (x > acc.m) {
        acc.s = acc.s * expf(acc.m - x) + 1.f;
        acc.m = x;
      } else if (x > -INFINITY) {  // -inf adds nothing (and -inf - -inf would be NaN)
        acc.s += expf(x - acc.m);
      }
    }
  }
  for (int o = 16; o > 0; o >>= 1)
    acc = merge(acc, MaxSum{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o)});
  __shared__ MaxSum part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < int(blockDim.x >> 5) ? part[lane] : MaxSum{-INFINITY, 0.f};
    for (int o = 16; o > 0; o >>= 1)
      acc = merge(acc, MaxSum{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o)});
    if (lane == 0) {
      const int64_t t = target[row];
      lse[row] = acc.m + logf(acc.s);
      picked[row] = t >= 0 && t < v ? to_f(xr[t]) : NAN;
    }
  }
}

// The gradient in place: one thread per N elements of a row (blockIdx.y).
template <typename T, int N>
__global__ void softmax_grad_kernel(T* __restrict__ logits, const float* __restrict__ lse,
                                    const int64_t* __restrict__ target, const float* __restrict__ scale, int64_t v) {
  const int64_t row = blockIdx.y, nv = v / N;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= nv) return;
  T* xr = logits + row * v;
  const float l = lse[row], sc = scale[row];
  const int64_t tgt = target[row];
  auto xv = load<T, N>(xr, i);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    float d = expf(to_f(xv.v[j]) - l);
    if (i * N + j == tgt) d -= 1.f;
    xv.v[j] = from_f<T>(d * sc);
  }
  store<T, N>(xr, i, xv);
}

// ---- Decoding attention: one query token per row over its cache's first S columns.
// Block (split, head, b) takes the columns [c0, c1) of key/value head `head` for the R query
// heads that share it, in chunks of kAttnChunk columns: each chunk's keys and values are copied
// into shared memory asynchronously (cp.async, two stages: the next chunk's copy runs while the
// current one is used; rows padded by 16 bytes, so the lanes of a quarter-warp reading eight
// keys hit distinct banks), then the scores (lane j of every warp: column j; warp w: query rows
// w, w + 4, ...; fp32 dot products against the queries, kept in shared memory in fp32; -inf
// where not allowed), each row's running maximum and sum of exponentials (a warp per row;
// online softmax: the sums so far rescaled by e^(m_old - m_new)), the weighted values (a thread
// per dimension, all rows). With one split the block writes the output; with more, fp32 partial
// sums and (max, sum) per row, which attention_combine_kernel merges.
constexpr int kAttnThreads = 128, kAttnWarps = kAttnThreads / 32, kAttnChunk = 32, kAttnMaxRows = 16, kAttnMaxD = 256;
constexpr int kAttnRowsPerWarp = kAttnMaxRows / kAttnWarps, kAttnDimsPerThread = kAttnMaxD / kAttnThreads;

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Starts the copy of rows [0, n) of k and v (rows d elements apart, 16-byte aligned) into ks
// and vs (rows `row` elements apart).
template <typename T>
__device__ __forceinline__ void stage_chunk(T* ks, T* vs, const T* __restrict__ k, const T* __restrict__ v, int n,
                                            int d, int row) {
  constexpr int V = 16 / sizeof(T);
  const int per_row = d / V, count = n * per_row;
  for (int i = threadIdx.x; i < count; i += kAttnThreads) {
    const int r = i / per_row, c = (i - r * per_row) * V;
    cp_async16(ks + r * row + c, k + int64_t(r) * d + c);
    cp_async16(vs + r * row + c, v + int64_t(r) * d + c);
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

template <typename T>
__global__ void __launch_bounds__(kAttnThreads)
    decode_attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            const bool* __restrict__ allowed, int64_t k_batch, int64_t k_head, int64_t v_batch,
                            int64_t v_head, int64_t allowed_batch, int heads, int rows, int d, int64_t span,
                            int64_t per_split, float scale, T* __restrict__ out, float* __restrict__ part,
                            float* __restrict__ stats) {
  constexpr int V = 16 / sizeof(T);
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int row = d + V;  // padded
  T* stage = reinterpret_cast<T*>(smem_bytes);                         // 2 stages x (keys, values) x C x row
  float* qs = reinterpret_cast<float*>(stage + 4 * kAttnChunk * row);  // rows x d
  float* p = qs + rows * d;                                            // rows x C
  float* st = p + rows * kAttnChunk;                                   // rows x 3: max, sum, rescale
  const int split = blockIdx.x, head = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c0 = int64_t(split) * per_split, c1 = c0 + per_split < span ? c0 + per_split : span;
  const T* kb = k + b * k_batch + head * k_head;
  const T* vb = v + b * v_batch + head * v_head;
  auto chunk_n = [&](int64_t c) { return int(c1 - c < kAttnChunk ? c1 - c : kAttnChunk); };
  auto keys_of = [&](int s) { return stage + s * 2 * kAttnChunk * row; };
  if (c0 < c1) stage_chunk(keys_of(0), keys_of(0) + kAttnChunk * row, kb + c0 * d, vb + c0 * d, chunk_n(c0), d, row);
  const T* qb = q + (int64_t(b) * heads + head) * rows * d;
  for (int i = threadIdx.x; i < rows * d; i += kAttnThreads) qs[i] = to_f(qb[i]);
  for (int r = threadIdx.x; r < rows; r += kAttnThreads) st[3 * r] = -INFINITY, st[3 * r + 1] = 0.f;
  float acc[kAttnDimsPerThread][kAttnMaxRows];
#pragma unroll
  for (int i = 0; i < kAttnDimsPerThread; ++i)
#pragma unroll
    for (int r = 0; r < kAttnMaxRows; ++r) acc[i][r] = 0.f;
  int s = 0;
  for (int64_t c = c0; c < c1; c += kAttnChunk, s ^= 1) {
    const int n = chunk_n(c);
    cp_async_wait_all();
    __syncthreads();  // this chunk's copy is visible; every thread is done with the other stage and p
    if (c + kAttnChunk < c1)
      stage_chunk(keys_of(s ^ 1), keys_of(s ^ 1) + kAttnChunk * row, kb + (c + kAttnChunk) * d,
                  vb + (c + kAttnChunk) * d, chunk_n(c + kAttnChunk), d, row);
    const T* ks = keys_of(s);
    const T* vs = ks + kAttnChunk * row;
    if (lane < n) {
      float dot[kAttnRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kAttnRowsPerWarp; ++i) dot[i] = 0.f;
      const T* kr = ks + lane * row;
      for (int e = 0; e < d; e += V) {
        const auto kv = load<T, V>(kr + e, 0);
        float kf[V];
#pragma unroll
        for (int t = 0; t < V; ++t) kf[t] = to_f(kv.v[t]);
#pragma unroll
        for (int i = 0; i < kAttnRowsPerWarp; ++i) {
          const int r = warp + kAttnWarps * i;
          if (r >= rows) break;
          const float4* q4 = reinterpret_cast<const float4*>(qs + r * d + e);
#pragma unroll
          for (int t = 0; t < V / 4; ++t) {
            const float4 qv = q4[t];
            dot[i] = fmaf(qv.x, kf[4 * t], dot[i]);
            dot[i] = fmaf(qv.y, kf[4 * t + 1], dot[i]);
            dot[i] = fmaf(qv.z, kf[4 * t + 2], dot[i]);
            dot[i] = fmaf(qv.w, kf[4 * t + 3], dot[i]);
          }
        }
      }
      const bool ok = allowed[b * allowed_batch + c + lane];
#pragma unroll
      for (int i = 0; i < kAttnRowsPerWarp; ++i) {
        const int r = warp + kAttnWarps * i;
        if (r < rows) p[r * kAttnChunk + lane] = ok ? dot[i] * scale : -INFINITY;
      }
    }
    __syncthreads();
    for (int r = warp; r < rows; r += kAttnWarps) {
      float* pr = p + r * kAttnChunk;
      const float x = lane < n ? pr[lane] : -INFINITY;
      float m = x;
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      const float m_old = st[3 * r], m_new = fmaxf(m_old, m);
      const float e = m_new == -INFINITY ? 0.f : expf(x - m_new);
      pr[lane] = e;
      float l = e;
      for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
      const float rescale = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
      __syncwarp();
      if (lane == 0) st[3 * r] = m_new, st[3 * r + 1] = st[3 * r + 1] * rescale + l, st[3 * r + 2] = rescale;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kAttnDimsPerThread; ++i) {
      const int e = threadIdx.x + i * kAttnThreads;
      if (e >= d) break;
#pragma unroll
      for (int r = 0; r < kAttnMaxRows; ++r) {
        if (r >= rows) break;
        acc[i][r] *= st[3 * r + 2];
      }
      for (int j = 0; j < n; ++j) {
        const float x = to_f(vs[j * row + e]);
#pragma unroll
        for (int r = 0; r < kAttnMaxRows; ++r) {
          if (r >= rows) break;
          acc[i][r] = fmaf(p[r * kAttnChunk + j], x, acc[i][r]);
        }
      }
    }
  }
  __syncthreads();  // the last chunk's sums are in st
  const int splits = gridDim.x;
#pragma unroll
  for (int i = 0; i < kAttnDimsPerThread; ++i) {
    const int e = threadIdx.x + i * kAttnThreads;
    if (e >= d) break;
#pragma unroll
    for (int r = 0; r < kAttnMaxRows; ++r) {
      if (r >= rows) break;
      const int64_t o = ((int64_t(b) * heads + head) * rows + r) * d + e;
      if (splits == 1) {
        const float l = st[3 * r + 1];
        out[o] = from_f<T>(l > 0.f ? acc[i][r] / l : 0.f);
      } else {
        const int64_t all = int64_t(gridDim.z) * heads * rows * d;
        part[split * all + o] = acc[i][r];
      }
    }
  }
  if (splits > 1 && threadIdx.x < rows) {
    const int64_t all = int64_t(gridDim.z) * heads * rows;
    const int64_t o = (int64_t(b) * heads + head) * rows + threadIdx.x;
    stats[2 * (split * all + o)] = st[3 * threadIdx.x];
    stats[2 * (split * all + o) + 1] = st[3 * threadIdx.x + 1];
  }
}

// Merges the splits' partial sums: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s, M the
// largest m_s (a split with nothing allowed has m_s = -inf, l_s = 0 and adds nothing). Block
// per query row.
template <typename T>
__global__ void attention_combine_kernel(const float* __restrict__ part, const float* __restrict__ stats, int splits,
                                         int64_t queries, int d, T* __restrict__ out) {
  const int64_t qi = blockIdx.x;
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, stats[2 * (s * queries + qi)]);
  float l = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float ms = stats[2 * (s * queries + qi)];
    if (ms != -INFINITY) l += expf(ms - m) * stats[2 * (s * queries + qi) + 1];
  }
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float ms = stats[2 * (s * queries + qi)];
      if (ms != -INFINITY) acc += expf(ms - m) * part[(s * queries + qi) * d + e];
    }
    out[qi * d + e] = from_f<T>(l > 0.f ? acc / l : 0.f);
  }
}

// ---- launching

bool aligned16(std::initializer_list<const at::Tensor*> ts) {
  for (const auto* t : ts)
    if (reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 != 0) return false;
  return true;
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw Error(std::string("fused ") + what + " kernel launch failed: " + cudaGetErrorString(err));
}

int grid_for(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return int(std::max<int64_t>(1, std::min<int64_t>(blocks, 132 * 32)));
}

// Calls f.template operator()<T>() with the CUDA type of `st` (fp32, bf16, fp16).
template <typename F> void by_dtype(at::ScalarType st, const char* what, F&& f) {
  if (st == at::kFloat) f(float{});
  else if (st == at::kBFloat16) f(__nv_bfloat16{});
  else if (st == at::kHalf) f(__half{});
  else throw Error(std::string("fused ") + what + ": dtype must be fp32, bf16 or fp16");
}

template <typename T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

int row_threads(int64_t work_per_row) {
  int t = 32;
  while (t < 1024 && t < work_per_row) t *= 2;
  return t;
}

}  // namespace

// The norm of x, or (delta defined) of sum = x + delta, into y; rstd when defined.
void rms_norm_into(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& sum, const at::Tensor& w,
                   const at::Tensor& y, const at::Tensor& rstd, double eps) {
  const int64_t h = x.size(-1), rows = x.numel() / std::max<int64_t>(h, 1);
  if (rows == 0) return;
  auto stream = at::cuda::getCurrentCUDAStream();
  const bool add = delta.defined();
  float* r = rstd.defined() ? rstd.data_ptr<float>() : nullptr;
  by_dtype(x.scalar_type(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const T* d = add ? ptr<T>(delta) : nullptr;
    T* s = add ? ptr<T>(sum) : nullptr;
    const bool vec = h % V == 0 && aligned16({&x, &w, &y}) && (!add || aligned16({&delta, &sum}));
#define R1DIST_RMS(NV, ADD)                                                                            \
  rms_forward_kernel<T, NV, ADD><<<rows, row_threads(h / NV), 0, stream>>>(ptr<T>(x), d, s, ptr<T>(w), \
                                                                           ptr<T>(y), r, h, float(eps))
    if (vec && add) R1DIST_RMS(V, true);
    else if (vec) R1DIST_RMS(V, false);
    else if (add) R1DIST_RMS(1, true);
    else R1DIST_RMS(1, false);
#undef R1DIST_RMS
  });
  check_launch("rms_norm forward");
}

std::pair<at::Tensor, at::Tensor> rms_norm_forward(const at::Tensor& x, const at::Tensor& w, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t h = x.size(-1), rows = x.numel() / std::max<int64_t>(h, 1);
  auto y = at::empty_like(x);
  auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  rms_norm_into(x, at::Tensor(), at::Tensor(), w, y, rstd, eps);
  return {y, rstd};
}

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& w,
                                               double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto sum = at::empty_like(x), y = at::empty_like(x);
  rms_norm_into(x, delta, sum, w, y, at::Tensor(), eps);
  return {sum, y};
}

at::Tensor rms_norm_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rstd) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t h = x.size(-1), rows = x.numel() / std::max<int64_t>(h, 1);
  auto dx = at::empty_like(x);
  if (rows == 0) return dx;
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(x.scalar_type(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    if (h % V == 0 && aligned16({&dy, &x, &w, &dx}))
      rms_backward_kernel<T, V><<<rows, row_threads(h / V), 0, stream>>>(ptr<T>(dy), ptr<T>(x), ptr<T>(w),
                                                                         rstd.data_ptr<float>(), ptr<T>(dx), h);
    else
      rms_backward_kernel<T, 1><<<rows, row_threads(h), 0, stream>>>(ptr<T>(dy), ptr<T>(x), ptr<T>(w),
                                                                     rstd.data_ptr<float>(), ptr<T>(dx), h);
  });
  check_launch("rms_norm backward");
  return dx;
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t t = x.size(1), heads = x.size(2), d = x.size(3), half = d / 2;
  const bool shared = cos.size(0) == 1;
  auto y = at::empty_like(x);
  if (x.numel() == 0) return y;
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(x.scalar_type(), "rope", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const int threads = 256;
    if (half % V == 0 && aligned16({&x, &cos, &sin, &y})) {
      const int64_t work = x.numel() / 2 / V;
      rope_kernel<T, V><<<grid_for(work, threads), threads, 0, stream>>>(
          ptr<T>(x), ptr<T>(cos), ptr<T>(sin), ptr<T>(y), work, t, heads, d, shared, backward);
    } else {
      const int64_t work = x.numel() / 2;
      rope_kernel<T, 1><<<grid_for(work, threads), threads, 0, stream>>>(
          ptr<T>(x), ptr<T>(cos), ptr<T>(sin), ptr<T>(y), work, t, heads, d, shared, backward);
    }
  });
  check_launch("rope");
  return y;
}

at::Tensor rope_into_cache(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos,
                           const at::Tensor& sin, at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& column) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t b = k_cache.size(0), hkv = k_cache.size(1), capacity = k_cache.size(2), d = k_cache.size(3);
  const int64_t hq = q.numel() / (b * d), half = d / 2;
  const bool shared = cos.numel() == d;
  auto y = at::empty({b, hq, d}, q.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(q.scalar_type(), "rope_into_cache", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const int threads = 256;
    auto go = [&](auto n) {
      constexpr int N = decltype(n)::value;
      const int64_t work = b * (hq + 2 * hkv) * (half / N);
      rope_into_cache_kernel<T, N><<<grid_for(work, threads), threads, 0, stream>>>(
          ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(cos), ptr<T>(sin), shared, ptr<T>(y), ptr<T>(k_cache),
          ptr<T>(v_cache), column.data_ptr<int64_t>(), b, hq, hkv, capacity, d);
    };
    if (half % V == 0 && aligned16({&q, &k, &v, &cos, &sin, &y, &k_cache, &v_cache}))
      go(std::integral_constant<int, V>());
    else
      go(std::integral_constant<int, 1>());
  });
  check_launch("rope_into_cache");
  return y;
}

at::Tensor swiglu_forward(const at::Tensor& g, const at::Tensor& u) {
  const c10::cuda::CUDAGuard guard(g.device());
  auto y = at::empty_like(g);
  const int64_t n = g.numel();
  if (n == 0) return y;
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(g.scalar_type(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const int threads = 256;
    if (n % V == 0 && aligned16({&g, &u, &y}))
      swiglu_forward_kernel<T, V><<<grid_for(n / V, threads), threads, 0, stream>>>(ptr<T>(g), ptr<T>(u), ptr<T>(y), n / V);
    else
      swiglu_forward_kernel<T, 1><<<grid_for(n, threads), threads, 0, stream>>>(ptr<T>(g), ptr<T>(u), ptr<T>(y), n);
  });
  check_launch("swiglu forward");
  return y;
}

std::pair<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& g, const at::Tensor& u) {
  const c10::cuda::CUDAGuard guard(g.device());
  auto dg = at::empty_like(g), du = at::empty_like(u);
  const int64_t n = g.numel();
  if (n == 0) return {dg, du};
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(g.scalar_type(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const int threads = 256;
    if (n % V == 0 && aligned16({&dy, &g, &u, &dg, &du}))
      swiglu_backward_kernel<T, V><<<grid_for(n / V, threads), threads, 0, stream>>>(
          ptr<T>(dy), ptr<T>(g), ptr<T>(u), ptr<T>(dg), ptr<T>(du), n / V);
    else
      swiglu_backward_kernel<T, 1><<<grid_for(n, threads), threads, 0, stream>>>(
          ptr<T>(dy), ptr<T>(g), ptr<T>(u), ptr<T>(dg), ptr<T>(du), n);
  });
  check_launch("swiglu backward");
  return {dg, du};
}

std::pair<at::Tensor, at::Tensor> logsumexp_and_target(const at::Tensor& logits, const at::Tensor& target) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0), v = logits.size(1);
  auto lse = at::empty({rows}, logits.options().dtype(at::kFloat));
  auto picked = at::empty({rows}, logits.options().dtype(at::kFloat));
  if (rows == 0 || v == 0) return {lse.fill_(-INFINITY), picked.fill_(0)};
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(logits.scalar_type(), "logsumexp", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    if (v % V == 0 && aligned16({&logits}))
      logsumexp_kernel<T, V><<<rows, row_threads(v / V), 0, stream>>>(
          ptr<T>(logits), target.data_ptr<int64_t>(), lse.data_ptr<float>(), picked.data_ptr<float>(), v);
    else
      logsumexp_kernel<T, 1><<<rows, row_threads(v), 0, stream>>>(
          ptr<T>(logits), target.data_ptr<int64_t>(), lse.data_ptr<float>(), picked.data_ptr<float>(), v);
  });
  check_launch("logsumexp");
  return {lse, picked};
}

void softmax_grad_(at::Tensor& logits, const at::Tensor& lse, const at::Tensor& target, const at::Tensor& scale) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0), v = logits.size(1);
  if (rows == 0 || v == 0) return;
  auto stream = at::cuda::getCurrentCUDAStream();
  const int threads = 256;
  by_dtype(logits.scalar_type(), "softmax_grad", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const bool vec = v % V == 0 && aligned16({&logits});
    const int64_t nv = vec ? v / V : v;
    // Rows in slices of at most 65,535 (the grid's y limit).
    for (int64_t r0 = 0; r0 < rows; r0 += 65535) {
      const dim3 grid(unsigned((nv + threads - 1) / threads), unsigned(std::min<int64_t>(65535, rows - r0)));
      T* x = ptr<T>(logits) + r0 * v;
      const float *l = lse.data_ptr<float>() + r0, *sc = scale.data_ptr<float>() + r0;
      const int64_t* t = target.data_ptr<int64_t>() + r0;
      if (vec) softmax_grad_kernel<T, V><<<grid, threads, 0, stream>>>(x, l, t, sc, v);
      else softmax_grad_kernel<T, 1><<<grid, threads, 0, stream>>>(x, l, t, sc, v);
    }
  });
  check_launch("softmax_grad");
}

bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& allowed) {
  if (!q.is_cuda() || q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || allowed.dim() != 2) return false;
  const auto st = q.scalar_type();
  if (st != at::kFloat && st != at::kBFloat16 && st != at::kHalf) return false;
  if (k.scalar_type() != st || v.scalar_type() != st || allowed.scalar_type() != at::kBool) return false;
  const int64_t b = q.size(0), heads = q.size(1), rows = q.size(2), d = q.size(3), span = k.size(2);
  const int64_t vec = 16 / int64_t(q.element_size());
  if (rows < 1 || rows > kAttnMaxRows || d < 1 || d > kAttnMaxD || d % vec != 0 || span < 1) return false;
  for (const auto* t : {&k, &v})
    if (t->size(0) != b || t->size(1) != heads || t->size(2) != span || t->size(3) != d || t->stride(3) != 1 ||
        t->stride(2) != d || t->stride(1) % vec != 0 || t->stride(0) % vec != 0 ||
        reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 != 0)
      return false;
  return allowed.size(0) == b && allowed.size(1) == span && allowed.stride(1) == 1 && q.is_contiguous() &&
         k.device() == q.device() && v.device() == q.device() && allowed.device() == q.device();
}

static int64_t decode_attention_splits(int64_t batch, int64_t heads, int64_t span, int sms) {
  const int64_t chunks = (span + kAttnChunk - 1) / kAttnChunk, groups = batch * heads;
  // About two blocks per multiprocessor, each at least one chunk; then as few splits as give
  // each that many chunks.
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>(chunks, (2 * int64_t(sms) + groups - 1) / groups));
  const int64_t per = (chunks + want - 1) / want;
  return (chunks + per - 1) / per;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                            double scale, int64_t splits) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t b = q.size(0), heads = q.size(1), rows = q.size(2), d = q.size(3), span = k.size(2);
  auto out = at::empty_like(q);
  const int64_t chunks = (span + kAttnChunk - 1) / kAttnChunk;
  if (splits <= 0)
    splits = decode_attention_splits(b, heads, span, at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  splits = std::min(splits, chunks);
  const int64_t per_split = (chunks + splits - 1) / splits * kAttnChunk;
  splits = (span + per_split - 1) / per_split;  // none empty
  at::Tensor part, stats;
  if (splits > 1) {
    part = at::empty({splits, b * heads * rows * d}, q.options().dtype(at::kFloat));
    stats = at::empty({splits, b * heads * rows * 2}, q.options().dtype(at::kFloat));
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(q.scalar_type(), "decode_attention", [&](auto tag) {
    using T = decltype(tag);
    const int64_t row = d + 16 / int64_t(sizeof(T));
    const size_t shared =
        size_t(4 * kAttnChunk * row) * sizeof(T) + size_t(rows * d + rows * kAttnChunk + 3 * rows) * sizeof(float);
    // Past the default 48 KB (fp32 with long heads): the device's opt-in limit, set once per dtype.
    static const cudaError_t raised = cudaFuncSetAttribute(decode_attention_kernel<T>,
                                                           cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024);
    if (raised != cudaSuccess) throw Error(std::string("decode attention: ") + cudaGetErrorString(raised));
    decode_attention_kernel<T><<<dim3(unsigned(splits), unsigned(heads), unsigned(b)), kAttnThreads, shared, stream>>>(
        ptr<T>(q), ptr<T>(k), ptr<T>(v), allowed.data_ptr<bool>(), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        allowed.stride(0), int(heads), int(rows), int(d), span, per_split, float(scale), ptr<T>(out),
        splits > 1 ? part.data_ptr<float>() : nullptr, splits > 1 ? stats.data_ptr<float>() : nullptr);
    if (splits > 1)
      attention_combine_kernel<T><<<unsigned(b * heads * rows), std::min<int>(int(d), 256), 0, stream>>>(
          part.data_ptr<float>(), stats.data_ptr<float>(), int(splits), b * heads * rows, int(d), ptr<T>(out));
  });
  check_launch("decode attention");
  return out;
}

}  // namespace r1dist::fused::cuda
