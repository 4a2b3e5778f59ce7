// CUDA elementwise kernels: activations (16-byte vector loads where aligned), broadcast binary
// ops, the GEMM's bias + activation pass, and the max-abs-difference check.

#include <algorithm>

#include "ops/cuda/common.cuh"

namespace streampool::detail::cuda {
namespace {

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

// bias_period 0: a bias per column; else one per row, row r taking bias[r % bias_period] (a
// batch of convolution outputs, a bias per channel).
template <typename T>
__global__ void bias_act_kernel(T* __restrict__ y, std::int64_t rows, std::int64_t cols, const T* __restrict__ bias,
                                std::int64_t bias_period, Activation a) {
  const std::int64_t n = rows * cols;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    float v = to_f(y[i]);
    if (bias) v += to_f(bias[bias_period ? (i / cols) % bias_period : i % cols]);
    y[i] = from_f<T>(act(v, a));
  }
}

// kVec: a and b 16-byte aligned, read 16 bytes at a time (then the tail one by one).
template <typename T, bool kVec>
__global__ void max_abs_diff_kernel(float* acc, const T* __restrict__ a, const T* __restrict__ b, std::int64_t n) {
  __shared__ float scratch[32];
  float m = 0.f;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  auto take = [&m](float x, float y) {
    const float d = fabsf(x - y);
    m = isnan(d) ? INFINITY : fmaxf(m, d);
  };
  std::int64_t done = 0;
  if constexpr (kVec) {
    constexpr int kPer = 16 / sizeof(T);
    const std::int64_t vectors = n / kPer;
    for (std::int64_t i = first; i < vectors; i += stride) {
      const uint4 va = reinterpret_cast<const uint4*>(a)[i], vb = reinterpret_cast<const uint4*>(b)[i];
      const T* ea = reinterpret_cast<const T*>(&va);
      const T* eb = reinterpret_cast<const T*>(&vb);
#pragma unroll
      for (int j = 0; j < kPer; ++j) take(to_f(ea[j]), to_f(eb[j]));
    }
    done = vectors * kPer;
  }
  for (std::int64_t i = done + first; i < n; i += stride) take(to_f(a[i]), to_f(b[i]));
  m = block_reduce<true>(m, scratch);
  // Non-negative floats order like their bit patterns, so an integer max is a float max.
  if (threadIdx.x == 0) atomicMax(reinterpret_cast<int*>(acc), __float_as_int(m));
}

template <typename T, Activation A>
void launch_unary(void* y, const void* x, std::int64_t n, cudaStream_t s) {
  constexpr int kPer = 16 / sizeof(T);
  if (n % kPer == 0 && aligned16(x) && aligned16(y)) {
    unary_vec_kernel<T, A><<<grid_for(n / kPer, 256), 256, 0, s>>>(static_cast<T*>(y), static_cast<const T*>(x), n / kPer);
  } else {
    unary_kernel<T, A><<<grid_for(n, 256), 256, 0, s>>>(static_cast<T*>(y), static_cast<const T*>(x), n);
  }
}

}  // namespace

void unary(void* y, const void* x, DType dt, std::int64_t n, Activation a, void* stream) {
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
                     void* stream, std::int64_t row_bias_period) {
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    bias_act_kernel<T><<<grid_for(rows * cols, 256), 256, 0, cs(stream)>>>(
        static_cast<T*>(y), rows, cols, static_cast<const T*>(bias), row_bias_period, a);
  });
  check("bias_activation", dt, [&] { return "output " + dims({rows, cols}); });
}

void max_abs_diff(float* acc, const void* a, const void* b, DType dt, std::int64_t n, void* stream) {
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    // A check beside the work it checks (the bench runs one per request, beside other streams'
    // requests): at least 64 elements per thread, 16 bytes per load, so that it needs few
    // multiprocessors to start and holds them briefly.
    const unsigned blocks = std::max(1u, std::min(static_cast<unsigned>((n + 256 * 64 - 1) / (256 * 64)),
                                                  static_cast<unsigned>(2 * sm_count())));
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (aligned16(a) && aligned16(b)) {
      max_abs_diff_kernel<T, true><<<blocks, 256, 0, cs(stream)>>>(acc, ta, tb, n);
    } else {
      max_abs_diff_kernel<T, false><<<blocks, 256, 0, cs(stream)>>>(acc, ta, tb, n);
    }
  });
  check("max_abs_diff", dt, [&] { return std::to_string(n) + " elements"; });
}

}  // namespace streampool::detail::cuda
