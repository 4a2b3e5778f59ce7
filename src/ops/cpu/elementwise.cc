// CPU elementwise kernels: activations, broadcast binary ops, the max-abs-difference check.

#include <algorithm>
#include <cmath>

#include "ops/cpu/activation.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/vec_math.h"

namespace streampool::detail::cpu {

void activate_n(float* y, const float* x, std::int64_t n, Activation act) {
  // In chunks, so that the vector math's argument fits a stack buffer.
  constexpr std::int64_t kChunk = 256;
  float t[kChunk];
  for (std::int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const std::int64_t m = std::min(kChunk, n - i0);
    const float* xi = x + i0;
    float* yi = y + i0;
    switch (act) {
      case Activation::none:
        if (yi != xi) std::copy(xi, xi + m, yi);
        break;
      case Activation::relu:
        for (std::int64_t j = 0; j < m; ++j) yi[j] = xi[j] > 0 ? xi[j] : 0.0f;
        break;
      case Activation::gelu:  // 0.5 x (1 + erf(x / sqrt 2))
        for (std::int64_t j = 0; j < m; ++j) t[j] = xi[j] * 0.70710678118654752f;
        erf_n(t, t, m);
        for (std::int64_t j = 0; j < m; ++j) yi[j] = 0.5f * xi[j] * (1.0f + t[j]);
        break;
      case Activation::gelu_tanh:  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        for (std::int64_t j = 0; j < m; ++j) t[j] = 0.7978845608028654f * (xi[j] + 0.044715f * xi[j] * xi[j] * xi[j]);
        tanh_n(t, t, m);
        for (std::int64_t j = 0; j < m; ++j) yi[j] = 0.5f * xi[j] * (1.0f + t[j]);
        break;
      case Activation::silu:  // x / (1 + exp(-x))
        for (std::int64_t j = 0; j < m; ++j) t[j] = -xi[j];
        exp_n(t, t, m);
        for (std::int64_t j = 0; j < m; ++j) yi[j] = xi[j] / (1.0f + t[j]);
        break;
      case Activation::tanh:
        tanh_n(yi, xi, m);
        break;
    }
  }
}

void unary(float* y, const float* x, std::int64_t n, Activation act) { activate_n(y, x, n, act); }

void binary(float* y, const float* a, const float* b, const Broadcast& bc, BinaryOp op) {
  std::int64_t idx[kMaxDims] = {};
  std::int64_t ia = 0, ib = 0;
  for (std::int64_t n = 0; n < bc.numel; ++n) {
    y[n] = op == BinaryOp::add ? a[ia] + b[ib] : a[ia] * b[ib];
    advance_two(bc.ndim, bc.shape, idx, bc.a_strides, ia, bc.b_strides, ib);
  }
}

void max_abs_diff(float* acc, const float* a, const float* b, std::int64_t n) {
  float m = *acc;
  for (std::int64_t i = 0; i < n; ++i) {
    const float d = std::abs(a[i] - b[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
  }
  *acc = m;
}

}  // namespace streampool::detail::cpu
