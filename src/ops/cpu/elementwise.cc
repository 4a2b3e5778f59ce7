// CPU elementwise kernels: activations, broadcast binary ops, the max-abs-difference check.

#include <algorithm>
#include <cmath>

#include "ops/cpu/activation.h"
#include "ops/cpu/kernels.h"

namespace streampool::detail::cpu {

void unary(float* y, const float* x, std::int64_t n, Activation act) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = act_one(x[i], act);
}

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
