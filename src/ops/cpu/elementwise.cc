// CPU elementwise kernels: activations, broadcast binary ops, the max-abs-difference check.

#include <algorithm>
#include <cmath>

#include "ops/cpu/activation.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"
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

void unary(float* y, const float* x, std::int64_t n, Activation act) {
  // A value's result does not depend on where it sits (vec_math.h), so any split gives the same.
  parallel_for(n, chunks_for(n, 1 << 15), 256, [&](std::int64_t b, std::int64_t e) { activate_n(y + b, x + b, e - b, act); });
}

namespace {
// One row of the last dimension: y[j] = a[j * as] op b[j * bs], with the common stride patterns
// (both contiguous; one repeated, as a bias or a residual of one row) as loops the compiler
// vectorizes.
template <BinaryOp Op>
void binary_row(float* y, const float* a, std::int64_t as, const float* b, std::int64_t bs, std::int64_t n) {
  auto f = [](float u, float v) { return Op == BinaryOp::add ? u + v : u * v; };
  if (as == 1 && bs == 1) {
    for (std::int64_t j = 0; j < n; ++j) y[j] = f(a[j], b[j]);
  } else if (as == 1 && bs == 0) {
    const float v = *b;
    for (std::int64_t j = 0; j < n; ++j) y[j] = f(a[j], v);
  } else if (as == 0 && bs == 1) {
    const float u = *a;
    for (std::int64_t j = 0; j < n; ++j) y[j] = f(u, b[j]);
  } else {
    for (std::int64_t j = 0; j < n; ++j) y[j] = f(a[j * as], b[j * bs]);
  }
}
}  // namespace

void binary(float* y, const float* a, const float* b, const Broadcast& bc, BinaryOp op) {
  if (bc.numel == 0) return;
  // Row by row along the last dimension; the outer dimensions step as in advance_two.
  const int last = bc.ndim - 1;
  const std::int64_t inner = bc.ndim ? bc.shape[last] : 1;
  const std::int64_t as = bc.ndim ? bc.a_strides[last] : 0, bs = bc.ndim ? bc.b_strides[last] : 0;
  std::int64_t idx[kMaxDims] = {};
  std::int64_t ia = 0, ib = 0;
  for (std::int64_t n = 0; n < bc.numel; n += inner) {
    if (op == BinaryOp::add) binary_row<BinaryOp::add>(y + n, a + ia, as, b + ib, bs, inner);
    else binary_row<BinaryOp::mul>(y + n, a + ia, as, b + ib, bs, inner);
    if (last > 0) advance_two(last, bc.shape, idx, bc.a_strides, ia, bc.b_strides, ib);
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
