// CUDA softmax and layer norm: one block per row; rows up to a few thousand elements kept in
// registers, longer ones staged in shared memory.

#include "ops/cuda/common.cuh"

namespace streampool::detail::cuda {
namespace {

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

}  // namespace

void softmax_rows(void* y, const void* x, DType dt, std::int64_t rows, std::int64_t n, void* stream) {
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

}  // namespace streampool::detail::cuda
