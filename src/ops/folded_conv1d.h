#pragma once
// A convolution's bias folded into its GEMM. Internal.
//
// Note [Folded convolution bias]
// cuBLASLt's bias epilogue adds a vector along our C's columns (a Linear's bias); a
// convolution's bias runs along its rows, one per output channel, so on CUDA it cost a pass of
// its own after the GEMM, with the activation. Folded, it costs nothing: the weight gets one more
// input column holding the bias (then zero columns up to a multiple of 8, so that every row stays
// 16-byte aligned), the column matrix one more row of ones (then zero rows), and the GEMM adds
// the bias as one more product term; a ReLU or tanh-GELU then rides in cuBLASLt's epilogue. The
// bias is summed in the GEMM's float32 accumulator, before the one rounding to the output dtype.
// The Conv1d module folds its weight once, when it is loaded on CUDA (nn::Module::prepare), but
// not for a kernel-1 convolution without padding or stride: its input is its column matrix as it
// is, and folding would add a copy for the pass it saves.

#include <cstdint>

#include "streampool/export.h"
#include "streampool/ops.h"

namespace streampool::detail {

// (out, in, k) and (out,) -> (out, in * k + 1 rounded up to 8): [weight | bias | 0 ...].
STREAMPOOL_TEST_HOOK Tensor fold_conv1d_bias(const Tensor& weight, const Tensor& bias);
// conv1d with a folded weight from fold_conv1d_bias: the same result as
// conv1d(x, weight, bias, stride, padding, act) up to the rounding of the bias's addition.
STREAMPOOL_TEST_HOOK Tensor conv1d_folded(const Tensor& x, const Tensor& folded, std::int64_t in_channels, std::int64_t kernel_size,
                                          int stride, int padding, Activation act);

}  // namespace streampool::detail
