#pragma once
// Elementwise float math over arrays for the CPU kernels: erf, exp, tanh. Two builds, chosen by
// CMake: vec_math_mvec.cc through glibc's vector math library (libmvec, glibc 2.35+: 4 floats a
// call, its own run-time choice of SSE4 / AVX2 / AVX-512 code), vec_math_scalar.cc through libm.
// Either way a value gives the same result wherever it sits in an array (the tail goes through
// the same vector call), so a batch's rows equal the same rows run alone. Internal.

#include <cstdint>

namespace streampool::detail::cpu {

void erf_n(float* y, const float* x, std::int64_t n);
void exp_n(float* y, const float* x, std::int64_t n);
void tanh_n(float* y, const float* x, std::int64_t n);

}  // namespace streampool::detail::cpu
