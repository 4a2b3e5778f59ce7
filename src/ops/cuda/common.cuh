#pragma once
// Device-side helpers shared by the CUDA kernels of the ops: conversions, activations, warp and
// block reductions, the dtype dispatch, launch geometry and the launch check. Internal.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <string>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "ops/cuda/kernels.h"
#include "streampool/error.h"

namespace streampool::detail::cuda {

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

inline std::string dims(std::initializer_list<std::int64_t> v) {
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
    throw_cuda((std::string(what) + " kernel launch").c_str(), st,
               describe() + " " + std::string(dtype_name(dt)) + " on cuda:" + std::to_string(device));
  }
}

// Multiprocessors of the calling thread's current device (the stream's), read once per device.
int sm_count();

// Blocks for a grid-stride loop over n items: enough to fill every multiprocessor many times
// over (64 blocks each), never more than the items need.
inline unsigned grid_for(std::int64_t n, int block) {
  const std::int64_t cap = static_cast<std::int64_t>(sm_count()) * 64;
  const std::int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > cap ? cap : g));
}

inline cudaStream_t cs(void* s) { return static_cast<cudaStream_t>(s); }

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

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

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
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -FLT_MAX : 0.f);
  return kMax ? warp_max(v) : warp_sum(v);
}

}  // namespace streampool::detail::cuda
