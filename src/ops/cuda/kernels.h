#pragma once
// The CUDA kernels of the ops, one file per op under ops/cuda/; float32, float16 and bfloat16
// with float32 arithmetic inside. Each launches on `stream` (a cudaStream_t) and throws
// CudaError naming the op, its shapes, the dtype and the device when the launch fails. A build
// without CUDA links ops/no_cuda/kernels.cc instead. Internal.

#include <cstdint>

#include "ops/kernel_args.h"

namespace streampool::detail::cuda {

// linear.cc: cuBLASLt with handles from a per-thread pool (Note [BLAS handles and workspaces]).
void gemm(const Device& device, DType dt, const GemmArgs& g, void* stream);
// elementwise.cu
// y (rows x cols) = act(y + bias): a bias per column, or with row_bias_period > 0 one per row,
// row r taking bias[r % row_bias_period].
void bias_activation(void* y, DType dt, std::int64_t rows, std::int64_t cols, const void* bias, Activation act,
                     void* stream, std::int64_t row_bias_period = 0);
void unary(void* y, const void* x, DType dt, std::int64_t n, Activation act, void* stream);
void binary(void* y, const void* a, const void* b, DType dt, const Broadcast& bc, BinaryOp op, void* stream);
void max_abs_diff(float* acc, const void* a, const void* b, DType dt, std::int64_t n, void* stream);
// normalization.cu
void softmax_rows(void* y, const void* x, DType dt, std::int64_t rows, std::int64_t n, void* stream);
void layer_norm_rows(void* y, const void* x, const void* w, const void* b, DType dt, std::int64_t rows,
                     std::int64_t n, float eps, void* stream);
// attention.cu
void attention(const AttentionArgs& a, DType dt, void* stream);
// embedding.cu: out-of-range ids give zero rows and fail the stream asynchronously.
void embedding(void* out, const std::int64_t* ids, std::int64_t count, const void* weight, DType dt,
               std::int64_t num, std::int64_t dim, const Device& device, void* stream);
// conv1d.cu
void im2col(void* cols, const void* x, DType dt, const Im2colArgs& a, void* stream);

}  // namespace streampool::detail::cuda
