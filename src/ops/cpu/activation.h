#pragma once
// The activations over arrays: the CPU kernels' one definition (elementwise ops, the GEMM's
// epilogue). Internal.

#include <cstdint>

#include "streampool/ops.h"

namespace streampool::detail::cpu {

// y[i] = act(x[i]) for n floats; y may be x. GELU, SiLU and tanh go through vec_math.h.
void activate_n(float* y, const float* x, std::int64_t n, Activation act);

}  // namespace streampool::detail::cpu
