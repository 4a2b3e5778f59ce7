// vec_math.h through libm, one value at a time (where glibc has no libmvec).

#include <cmath>

#include "ops/cpu/vec_math.h"

namespace streampool::detail::cpu {

void erf_n(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}
void exp_n(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
void tanh_n(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

}  // namespace streampool::detail::cpu
