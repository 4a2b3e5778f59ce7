// CUDA kernels of the ops, for float32, float16 and bfloat16 (float32 arithmetic inside).

#include "core/exit_gate.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/op_common.h"

namespace streampool::detail::cuda {
namespace {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float act(float x, Activation a) {
  switch (a) {
    case Activation::none: return x;
    case Activation::relu: return x > 0.f ? x : 0.f;
    case Activation::gelu: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case Activation::gelu_tanh: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case Activation::silu: return x / (1.f + expf(-x));
    case Activation::tanh: return tanhf(x);
  }
  return x;
}

// GELU for 16-bit tensors: erf from Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7,
// far under half precision's rounding) with one fast exponential, instead of erff's longer
// sequence: at 16 bits per element erff made the kernel compute-bound.
__device__ __forceinline__ float gelu_16bit(float x) {
  const float z = fabsf(x) * 0.70710678118654752f;
  const float t = __fdividef(1.f, 1.f + 0.3275911f * z);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float erf_abs = 1.f - poly * __expf(-z * z);
  return 0.5f * x * (1.f + copysignf(erf_abs, x));
}

template <typename T, Activation a>
__device__ __forceinline__ float act_t(float x) {
  if constexpr (sizeof(T) == 2 && a == Activation::gelu) {
    return gelu_16bit(x);
  } else {
    return act(x, a);
  }
}

std::string dims(std::initializer_list<std::int64_t> v) {
  std::string out = "(";
  for (std::int64_t x : v) out += (out.size() > 1 ? ", " : "") + std::to_string(x);
  return out + ")";
}

// A launch failure names the op, its shapes (described only on failure), the dtype and the device.
template <typename Describe>
void check(const char* what, DType dt, Describe&& describe) {
  cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess) {
    int device = -1;
    cudaGetDevice(&device);
    throw CudaError(std::string(what) + " kernel launch failed for " + describe() + " " + std::string(dtype_name(dt)) +
                        " on cuda:" + std::to_string(device) + ": " + cudaGetErrorString(st),
                    static_cast<int>(st));
  }
}

unsigned grid_for(std::int64_t n, int block) {
  std::int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 132 * 64 ? 132 * 64 : g));
}

cudaStream_t cs(void* s) { return static_cast<cudaStream_t>(s); }

// Calls f.template operator()<T>() with the C++ type of dt.
template <typename F>
void dispatch(DType dt, F&& f) {
  switch (dt) {
    case DType::float32: f(float{}); break;
    case DType::float16: f(__half{}); break;
    case DType::bfloat16: f(__nv_bfloat16{}); break;
    default: throw InvalidArgument("cuda kernel: unsupported dtype " + std::string(dtype_name(dt)));
  }
}

// ---- elementwise ----

template <typename T, Activation a>
__global__ void unary_kernel(T* __restrict__ y, const T* __restrict__ x, std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    y[i] = from_f<T>(act_t<T, a>(to_f(x[i])));
  }
}

// 16-byte loads and stores: 4 floats or 8 halves per thread and step. The activation is a
// template argument: no per-element branch on it.
template <typename T, Activation a>
__global__ void unary_vec_kernel(T* __restrict__ y, const T* __restrict__ x, std::int64_t nvec) {
  constexpr int kPer = 16 / sizeof(T);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nvec; i += stride) {
    uint4 raw = reinterpret_cast<const uint4*>(x)[i];
    if constexpr (std::is_same_v<T, __half>) {
      // Packed conversions (two values per instruction): at 16 bits per element the conversion
      // and special-function units, not memory, set the pace.
      __half2* v = reinterpret_cast<__half2*>(&raw);
#pragma unroll
      for (int j = 0; j < kPer / 2; ++j) {
        const float2 f = __half22float2(v[j]);
        v[j] = __floats2half2_rn(act_t<T, a>(f.x), act_t<T, a>(f.y));
      }
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      __nv_bfloat162* v = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
      for (int j = 0; j < kPer / 2; ++j) {
        const float2 f = __bfloat1622float2(v[j]);
        v[j] = __floats2bfloat162_rn(act_t<T, a>(f.x), act_t<T, a>(f.y));
      }
    } else {
      T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int j = 0; j < kPer; ++j) v[j] = from_f<T>(act_t<T, a>(to_f(v[j])));
    }
    reinterpret_cast<uint4*>(y)[i] = raw;
  }
}

template <typename T>
__global__ void binary_same_vec_kernel(T* __restrict__ y, const T* __restrict__ a, const T* __restrict__ b,
                                       std::int64_t nvec, BinaryOp op) {
  constexpr int kPer = 16 / sizeof(T);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nvec; i += stride) {
    uint4 ra = reinterpret_cast<const uint4*>(a)[i];
    uint4 rb = reinterpret_cast<const uint4*>(b)[i];
    T* va = reinterpret_cast<T*>(&ra);
    const T* vb = reinterpret_cast<const T*>(&rb);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const float fa = to_f(va[j]), fb = to_f(vb[j]);
      va[j] = from_f<T>(op == BinaryOp::add ? fa + fb : fa * fb);
    }
    reinterpret_cast<uint4*>(y)[i] = ra;
  }
}

template <typename T>
__global__ void binary_kernel(T* __restrict__ y, const T* __restrict__ a, const T* __restrict__ b, Broadcast bc,
                              BinaryOp op) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; n < bc.numel; n += stride) {
    std::int64_t rem = n, ia = 0, ib = 0;
    for (int k = bc.ndim - 1; k >= 0; --k) {
      const std::int64_t i = rem % bc.shape[k];
      rem /= bc.shape[k];
      ia += i * bc.a_strides[k];
      ib += i * bc.b_strides[k];
    }
    const float fa = to_f(a[ia]), fb = to_f(b[ib]);
    y[n] = from_f<T>(op == BinaryOp::add ? fa + fb : fa * fb);
  }
}

template <typename T>
__global__ void bias_act_kernel(T* __restrict__ y, std::int64_t rows, std::int64_t cols, const T* __restrict__ bias,
                                Activation a) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    float v = to_f(y[i]);
    if (bias) v += to_f(bias[i % cols]);
    y[i] = from_f<T>(act(v, a));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// ---- row reductions: one block per row, the row staged in shared memory ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -FLT_MAX : 0.f);
  return kMax ? warp_max(v) : warp_sum(v);
}

template <typename T>
__global__ void softmax_kernel(T* __restrict__ y, const T* __restrict__ x, std::int64_t n) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const T* in = x + blockIdx.x * n;
  T* out = y + blockIdx.x * n;
  float mx = -FLT_MAX;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f(in[i]);
    row[i] = v;
    mx = fmaxf(mx, v);
  }
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.f;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = __expf(row[i] - mx);
    row[i] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, scratch);
  const float inv = 1.f / sum;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) out[i] = from_f<T>(row[i] * inv);
}

template <typename T>
__global__ void layer_norm_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ b, std::int64_t n, float eps) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const T* in = x + blockIdx.x * n;
  T* out = y + blockIdx.x * n;
  float sum = 0.f;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f(in[i]);
    row[i] = v;
    sum += v;
  }
  const float mean = block_reduce<false>(sum, scratch) / static_cast<float>(n);
  float sq = 0.f;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(block_reduce<false>(sq, scratch) / static_cast<float>(n) + eps);
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    out[i] = from_f<T>((row[i] - mean) * rstd * to_f(w[i]) + to_f(b[i]));
  }
}

// Rows up to a few thousand elements: each thread keeps its share of the row in registers,
// read once with 16-byte loads (all loads in flight before the first reduction), written once.
constexpr int kRowVecs = 2;  // 16-byte vectors per thread

template <typename T>
__device__ __forceinline__ void load_row(float* v, const T* in, int n) {
  constexpr int kVec = 16 / sizeof(T);
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j) {
    const int idx = (j * blockDim.x + threadIdx.x) * kVec;
    if (idx < n) {
      uint4 raw = *reinterpret_cast<const uint4*>(in + idx);
      const T* t = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[j * kVec + k] = to_f(t[k]);
    }
  }
}

template <typename T>
__device__ __forceinline__ void store_row(T* out, const float* v, int n) {
  constexpr int kVec = 16 / sizeof(T);
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j) {
    const int idx = (j * blockDim.x + threadIdx.x) * kVec;
    if (idx < n) {
      uint4 raw;
      T* t = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int k = 0; k < kVec; ++k) t[k] = from_f<T>(v[j * kVec + k]);
      *reinterpret_cast<uint4*>(out + idx) = raw;
    }
  }
}

template <typename T>
__global__ void softmax_reg_kernel(T* __restrict__ y, const T* __restrict__ x, int n) {
  constexpr int kVec = 16 / sizeof(T), kE = kRowVecs * kVec;
  __shared__ float scratch[32];
  float v[kE];
  load_row(v, x + static_cast<std::int64_t>(blockIdx.x) * n, n);
  float mx = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j)
    if ((j * blockDim.x + threadIdx.x) * kVec < n)
#pragma unroll
      for (int k = 0; k < kVec; ++k) mx = fmaxf(mx, v[j * kVec + k]);
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j)
    if ((j * blockDim.x + threadIdx.x) * kVec < n)
#pragma unroll
      for (int k = 0; k < kVec; ++k) sum += (v[j * kVec + k] = __expf(v[j * kVec + k] - mx));
  const float inv = 1.f / block_reduce<false>(sum, scratch);
#pragma unroll
  for (int e = 0; e < kE; ++e) v[e] *= inv;
  store_row(y + static_cast<std::int64_t>(blockIdx.x) * n, v, n);
}

template <typename T>
__global__ void layer_norm_reg_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                      const T* __restrict__ b, int n, float eps) {
  constexpr int kVec = 16 / sizeof(T), kE = kRowVecs * kVec;
  __shared__ float scratch[32];
  float v[kE], wv[kE], bv[kE];
  load_row(v, x + static_cast<std::int64_t>(blockIdx.x) * n, n);
  load_row(wv, w, n);
  load_row(bv, b, n);
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j)
    if ((j * blockDim.x + threadIdx.x) * kVec < n)
#pragma unroll
      for (int k = 0; k < kVec; ++k) sum += v[j * kVec + k];
  const float mean = block_reduce<false>(sum, scratch) / static_cast<float>(n);
  float sq = 0.f;
#pragma unroll
  for (int j = 0; j < kRowVecs; ++j)
    if ((j * blockDim.x + threadIdx.x) * kVec < n)
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float d = v[j * kVec + k] - mean;
        sq += d * d;
      }
  const float rstd = rsqrtf(block_reduce<false>(sq, scratch) / static_cast<float>(n) + eps);
#pragma unroll
  for (int e = 0; e < kE; ++e) v[e] = (v[e] - mean) * rstd * wv[e] + bv[e];
  store_row(y + static_cast<std::int64_t>(blockIdx.x) * n, v, n);
}

// Threads per row for the register kernels, or 0 where they do not apply.
template <typename T>
int reg_row_threads(std::int64_t n, std::initializer_list<const void*> ptrs) {
  constexpr int kVec = 16 / sizeof(T);
  if (n % kVec != 0 || (n * static_cast<std::int64_t>(sizeof(T))) % 16 != 0) return 0;
  for (const void* p : ptrs)
    if (!aligned16(p)) return 0;
  const std::int64_t per_block = kRowVecs * kVec;
  const std::int64_t t = ((n + per_block - 1) / per_block + 31) / 32 * 32;
  return t <= 1024 ? static_cast<int>(t) : 0;
}

int row_threads(std::int64_t n) {
  int t = 32;
  while (t < 1024 && t * 4 < n) t *= 2;
  return t;
}

// ---- attention: one warp per query, key/value tiles of 32 shared by the block's warps ----

constexpr int kAttnWarps = 8;
constexpr int kTile = 32;

template <typename T, int kD>
__global__ void __launch_bounds__(kAttnWarps * 32) attention_kernel(AttentionArgs a) {
  constexpr int kPer = (kD + 31) / 32;  // output dims per lane
  __shared__ float ks[kTile][kD + 1];   // +1: lanes reading one column hit different banks
  __shared__ float vs[kTile][kD];
  __shared__ float qs[kAttnWarps][kD];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int qi = blockIdx.x * kAttnWarps + warp;
  const bool active = qi < a.sq;
  const T* q = static_cast<const T*>(a.q) + b * a.q_stride[0] + h * a.q_stride[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_stride[0] + h * a.k_stride[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_stride[0] + h * a.v_stride[1];
  if (active) {
    for (int d = lane; d < a.d; d += 32) qs[warp][d] = to_f(q[qi * a.q_stride[2] + d]) * a.scale;
  }
  float m = -FLT_MAX, l = 0.f, acc[kPer];
  bool saw_nan = false;  // a NaN score (NaN in q or k, or a NaN scale): the row is NaN, as in PyTorch
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0.f;
  // Causal: no query of this block looks past its last row.
  const int last_q = min(a.sq, (blockIdx.x + 1) * kAttnWarps) - 1;
  const int kend = a.causal ? min(a.sk, last_q + 1) : a.sk;
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * a.d; idx += blockDim.x) {
      const int j = idx / a.d, d = idx % a.d, kj = k0 + j;
      const bool in = kj < a.sk;
      ks[j][d] = in ? to_f(k[kj * a.k_stride[2] + d]) : 0.f;
      vs[j][d] = in ? to_f(v[kj * a.v_stride[2] + d]) : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    const int kj = k0 + lane;
    bool valid = kj < a.sk && !(a.causal && kj > qi) && !(a.mask && a.mask[b * a.sk + kj]);
    float s = -FLT_MAX;
    if (valid) {
      s = 0.f;
#pragma unroll 8
      for (int d = 0; d < a.d; ++d) s += qs[warp][d] * ks[lane][d];
    }
    // fmaxf drops NaN, so the max alone would hide it: look for it first (warp-uniform).
    saw_nan |= __any_sync(0xffffffffu, valid && isnan(s));
    const float tile_max = warp_max(s);
    if (tile_max == -FLT_MAX) continue;  // every key of this tile masked for this query
    const float m_new = fmaxf(m, tile_max);
    const float alpha = __expf(m - m_new);
    const float p = valid ? __expf(s - m_new) : 0.f;
    l = l * alpha + warp_sum(p);
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc[t] *= alpha;
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      if (pj == 0.f) continue;
#pragma unroll
      for (int t = 0; t < kPer; ++t) {
        const int d = lane + 32 * t;
        if (d < kD) acc[t] += pj * vs[j][d];
      }
    }
    m = m_new;
  }
  if (!active) return;
  T* o = static_cast<T*>(a.out) + b * a.o_stride[0] + h * a.o_stride[1] + qi * a.o_stride[2];
  const float inv = l > 0.f ? 1.f / l : 0.f;  // a query whose every key is masked gets zeros
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int d = lane + 32 * t;
    if (d < a.d) o[d] = from_f<T>(saw_nan ? __int_as_float(0x7fc00000) : acc[t] * inv);
  }
}

template <typename T>
__global__ void embedding_kernel(T* __restrict__ out, const std::int64_t* __restrict__ ids, const T* __restrict__ w,
                                 std::int64_t num, std::int64_t dim, int* bad) {
  const std::int64_t id = ids[blockIdx.x];
  T* dst = out + blockIdx.x * dim;
  const bool ok = id >= 0 && id < num;
  if (!ok && threadIdx.x == 0) atomicExch(bad, 1);
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = ok ? w[id * dim + i] : from_f<T>(0.f);
}

template <typename T>
__global__ void im2col_kernel(T* __restrict__ cols, const T* __restrict__ x, int batch, int cin, int len, int kernel,
                              int stride, int padding, int lout) {
  const std::int64_t total = static_cast<std::int64_t>(batch) * cin * kernel * lout;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; n < total; n += step) {
    const int l = static_cast<int>(n % lout);
    const std::int64_t r = n / lout;  // (b, c, t)
    const int t = static_cast<int>(r % kernel);
    const std::int64_t bc = r / kernel;
    const int p = l * stride - padding + t;
    cols[n] = (p >= 0 && p < len) ? x[bc * len + p] : from_f<T>(0.f);
  }
}

template <typename T>
__global__ void max_abs_diff_kernel(float* acc, const T* __restrict__ a, const T* __restrict__ b, std::int64_t n) {
  __shared__ float scratch[32];
  float m = 0.f;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float d = fabsf(to_f(a[i]) - to_f(b[i]));
    m = isnan(d) ? INFINITY : fmaxf(m, d);
  }
  m = block_reduce<true>(m, scratch);
  // Non-negative floats order like their bit patterns, so an integer max is a float max.
  if (threadIdx.x == 0) atomicMax(reinterpret_cast<int*>(acc), __float_as_int(m));
}

// Pinned host words that device kernels report errors into; a slot returns after its check.
class PinnedSlots {
 public:
  int* get() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      int* chunk = nullptr;
      cudaError_t st = cudaHostAlloc(reinterpret_cast<void**>(&chunk), 4096 * sizeof(int), cudaHostAllocDefault);
      if (st != cudaSuccess) throw CudaError(std::string("cudaHostAlloc: ") + cudaGetErrorString(st), static_cast<int>(st));
      for (int i = 0; i < 4096; ++i) free_.push_back(chunk + i);  // never freed: Note [Process lifetime]
    }
    int* p = free_.back();
    free_.pop_back();
    return p;
  }
  void put(int* p) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(p);
  }

 private:
  std::mutex mu_;  // guards free_
  std::vector<int*> free_;
};

PinnedSlots& pinned_slots() {
  static auto* s = new PinnedSlots;
  return *s;
}

}  // namespace

template <typename T, Activation A>
void launch_unary(void* y, const void* x, std::int64_t n, cudaStream_t s) {
  constexpr int kPer = 16 / sizeof(T);
  if (n % kPer == 0 && aligned16(x) && aligned16(y)) {
    unary_vec_kernel<T, A><<<grid_for(n / kPer, 256), 256, 0, s>>>(static_cast<T*>(y), static_cast<const T*>(x), n / kPer);
  } else {
    unary_kernel<T, A><<<grid_for(n, 256), 256, 0, s>>>(static_cast<T*>(y), static_cast<const T*>(x), n);
  }
}

void unary(void* y, const void* x, DType dt, std::int64_t n, Activation a, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    switch (a) {
      case Activation::none: launch_unary<T, Activation::none>(y, x, n, cs(stream)); break;
      case Activation::relu: launch_unary<T, Activation::relu>(y, x, n, cs(stream)); break;
      case Activation::gelu: launch_unary<T, Activation::gelu>(y, x, n, cs(stream)); break;
      case Activation::gelu_tanh: launch_unary<T, Activation::gelu_tanh>(y, x, n, cs(stream)); break;
      case Activation::silu: launch_unary<T, Activation::silu>(y, x, n, cs(stream)); break;
      case Activation::tanh: launch_unary<T, Activation::tanh>(y, x, n, cs(stream)); break;
    }
  });
  check("activation", dt, [&] { return std::to_string(n) + " elements"; });
}

void binary(void* y, const void* a, const void* b, DType dt, const Broadcast& bc, BinaryOp op, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kPer = 16 / sizeof(T);
    bool dense = true;  // both operands laid out exactly like the output
    std::int64_t expect = 1;
    for (int k = bc.ndim - 1; k >= 0; --k) {
      if (bc.shape[k] != 1 && (bc.a_strides[k] != expect || bc.b_strides[k] != expect)) dense = false;
      expect *= bc.shape[k];
    }
    if (dense && bc.numel % kPer == 0 && aligned16(a) && aligned16(b) && aligned16(y)) {
      binary_same_vec_kernel<T><<<grid_for(bc.numel / kPer, 256), 256, 0, cs(stream)>>>(
          static_cast<T*>(y), static_cast<const T*>(a), static_cast<const T*>(b), bc.numel / kPer, op);
    } else {
      binary_kernel<T><<<grid_for(bc.numel, 256), 256, 0, cs(stream)>>>(static_cast<T*>(y), static_cast<const T*>(a),
                                                                         static_cast<const T*>(b), bc, op);
    }
  });
  check(op == BinaryOp::add ? "add" : "mul", dt, [&] {
    Shape shape(bc.shape, bc.shape + bc.ndim);
    return "output " + shape_str(shape);
  });
}

void bias_activation(void* y, DType dt, std::int64_t rows, std::int64_t cols, const void* bias, Activation a,
                     void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    bias_act_kernel<T><<<grid_for(rows * cols, 256), 256, 0, cs(stream)>>>(static_cast<T*>(y), rows, cols,
                                                                            static_cast<const T*>(bias), a);
  });
  check("bias_activation", dt, [&] { return "output " + dims({rows, cols}); });
}

void softmax_rows(void* y, const void* x, DType dt, std::int64_t rows, std::int64_t n, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  if (n * sizeof(float) > 96 * 1024) throw InvalidArgument("softmax: rows longer than 24576 are not supported on CUDA");
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    if (int t = reg_row_threads<T>(n, {x, y})) {
      softmax_reg_kernel<T><<<static_cast<unsigned>(rows), t, 0, cs(stream)>>>(static_cast<T*>(y), static_cast<const T*>(x),
                                                                              static_cast<int>(n));
      return;
    }
    const std::size_t smem = n * sizeof(float);
    if (smem > 48 * 1024) cudaFuncSetAttribute(softmax_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024);
    softmax_kernel<T><<<static_cast<unsigned>(rows), row_threads(n), smem, cs(stream)>>>(static_cast<T*>(y),
                                                                                         static_cast<const T*>(x), n);
  });
  check("softmax", dt, [&] { return "rows " + dims({rows, n}); });
}

void layer_norm_rows(void* y, const void* x, const void* w, const void* b, DType dt, std::int64_t rows, std::int64_t n,
                     float eps, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  if (n * sizeof(float) > 96 * 1024) throw InvalidArgument("layer_norm: rows longer than 24576 are not supported on CUDA");
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    if (int t = reg_row_threads<T>(n, {x, y, w, b})) {
      layer_norm_reg_kernel<T><<<static_cast<unsigned>(rows), t, 0, cs(stream)>>>(
          static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
          static_cast<int>(n), eps);
      return;
    }
    const std::size_t smem = n * sizeof(float);
    if (smem > 48 * 1024) {
      cudaFuncSetAttribute(layer_norm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024);
    }
    layer_norm_kernel<T><<<static_cast<unsigned>(rows), row_threads(n), smem, cs(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), n, eps);
  });
  check("layer_norm", dt, [&] { return "rows " + dims({rows, n}); });
}

void attention(const AttentionArgs& a, DType dt, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dim3 grid((a.sq + kAttnWarps - 1) / kAttnWarps, a.batch * a.heads);
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    if (a.d <= 32) attention_kernel<T, 32><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else if (a.d <= 64) attention_kernel<T, 64><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else if (a.d <= 128) attention_kernel<T, 128><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else throw InvalidArgument("attention: head dimension above 128 is not supported on CUDA");
  });
  check("scaled_dot_product_attention", dt, [&] {
    return "q " + dims({a.batch, a.heads, a.sq, a.d}) + ", k and v " + dims({a.batch, a.heads, a.sk, a.d});
  });
}

void embedding(void* out, const std::int64_t* ids, std::int64_t count, const void* weight, DType dt, std::int64_t num,
               std::int64_t dim, const Device& dev, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  // Out-of-range ids: the kernel writes zeros and raises a flag, copied to pinned memory and
  // checked by a host task, which turns it into the stream's asynchronous error.
  Tensor flag = zeros({1}, DType::int32, dev);
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<static_cast<unsigned>(count), 128, 0, cs(stream)>>>(
        static_cast<T*>(out), ids, static_cast<const T*>(weight), num, dim, flag.data<std::int32_t>());
  });
  check("embedding", dt, [&] { return std::to_string(count) + " ids of weight " + dims({num, dim}); });
  int* slot = pinned_slots().get();
  cudaError_t st = cudaMemcpyAsync(slot, flag.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost, cs(stream));
  if (st != cudaSuccess) {
    pinned_slots().put(slot);
    throw CudaError(std::string("embedding: cudaMemcpyAsync: ") + cudaGetErrorString(st), static_cast<int>(st));
  }
  Stream s = current_stream(dev);
  s.enqueue_host("embedding", [slot, num] {
    const int bad = *slot;
    pinned_slots().put(slot);
    if (bad) throw InvalidArgument("embedding: an id is outside [0, " + std::to_string(num) + ")");
  });
}

void max_abs_diff(float* acc, const void* a, const void* b, DType dt, std::int64_t n, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    max_abs_diff_kernel<T><<<std::min(grid_for(n, 256), 264u), 256, 0, cs(stream)>>>(acc, static_cast<const T*>(a),
                                                                                      static_cast<const T*>(b), n);
  });
  check("max_abs_diff", dt, [&] { return std::to_string(n) + " elements"; });
}

void im2col(void* cols, const void* x, DType dt, int batch, int cin, int len, int kernel, int stride, int padding,
            int lout, void* stream) {
    STREAMPOOL_CUDA_SCOPE;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    im2col_kernel<T><<<grid_for(static_cast<std::int64_t>(batch) * cin * kernel * lout, 256), 256, 0, cs(stream)>>>(
        static_cast<T*>(cols), static_cast<const T*>(x), batch, cin, len, kernel, stride, padding, lout);
  });
  check("conv1d (im2col)", dt, [&] {
    return "input " + dims({batch, cin, len}) + ", kernel " + std::to_string(kernel) + ", stride " + std::to_string(stride) +
           ", padding " + std::to_string(padding);
  });
}

}  // namespace streampool::detail::cuda
