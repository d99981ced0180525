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

// ---- RMSNorm: one block per row.
template <typename T, int N>
__global__ void rms_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                   float* __restrict__ rstd, int64_t h, float eps) {
  const int64_t row = blockIdx.x, nv = h / N;
  const T* xr = x + row * h;
  T* yr = y + row * h;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const auto xv = load<T, N>(xr, i);
#pragma unroll
    for (int j = 0; j < N; ++j) ss += to_f(xv.v[j]) * to_f(xv.v[j]);
  }
  const float r = rsqrtf(block_sum(ss) / float(h) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
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

// ---- RoPE over x (B, T, heads, D): one thread per N consecutive d of the first half and
// their partners d + D/2. cos, sin (Bc, T, D) with Bc = 1 (shared) or B.
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
    const auto x1 = load<T, N>(x + xo, 0), x2 = load<T, N>(x + xo + half, 0);
    const auto c1 = load<T, N>(cos + co, 0), c2 = load<T, N>(cos + co + half, 0);
    const auto s1 = load<T, N>(sin + co, 0), s2 = load<T, N>(sin + co + half, 0);
    Vec<T, N> y1, y2;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float a = to_f(x1.v[j]), b2 = to_f(x2.v[j]);
      if (!backward) {  // y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2
        y1.v[j] = from_f<T>(a * to_f(c1.v[j]) - b2 * to_f(s1.v[j]));
        y2.v[j] = from_f<T>(b2 * to_f(c2.v[j]) + a * to_f(s2.v[j]));
      } else {  // dx1 = dy1 c1 + dy2 s2, dx2 = dy2 c2 - dy1 s1
        y1.v[j] = from_f<T>(a * to_f(c1.v[j]) + b2 * to_f(s2.v[j]));
        y2.v[j] = from_f<T>(b2 * to_f(c2.v[j]) - a * to_f(s1.v[j]));
      }
    }
    store<T, N>(y + xo, 0, y1);
    store<T, N>(y + xo + half, 0, y2);
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

std::pair<at::Tensor, at::Tensor> rms_norm_forward(const at::Tensor& x, const at::Tensor& w, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t h = x.size(-1), rows = x.numel() / std::max<int64_t>(h, 1);
  auto y = at::empty_like(x);
  auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  if (rows == 0) return {y, rstd};
  auto stream = at::cuda::getCurrentCUDAStream();
  by_dtype(x.scalar_type(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    if (h % V == 0 && aligned16({&x, &w, &y}))
      rms_forward_kernel<T, V><<<rows, row_threads(h / V), 0, stream>>>(ptr<T>(x), ptr<T>(w), ptr<T>(y),
                                                                        rstd.data_ptr<float>(), h, float(eps));
    else
      rms_forward_kernel<T, 1><<<rows, row_threads(h), 0, stream>>>(ptr<T>(x), ptr<T>(w), ptr<T>(y),
                                                                    rstd.data_ptr<float>(), h, float(eps));
  });
  check_launch("rms_norm forward");
  return {y, rstd};
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

}  // namespace r1dist::fused::cuda
