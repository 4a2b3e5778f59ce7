#pragma once
// The CPU kernels of the ops, float32, one file per op under ops/cpu/. They run inside stream
// tasks, on one stream's worker thread each. Internal.

#include <cstdint>

#include "ops/kernel_args.h"

namespace streampool::detail::cpu {

// linear.cc: the GEMM (blas.h's provider; blocks over the intra-op pool, parallel.h), then the
// bias and activation; every pointer is a float*.
void gemm(const GemmArgs& g);
// elementwise.cc
void unary(float* y, const float* x, std::int64_t n, Activation act);
void binary(float* y, const float* a, const float* b, const Broadcast& bc, BinaryOp op);
void max_abs_diff(float* acc, const float* a, const float* b, std::int64_t n);
// normalization.cc
void softmax_rows(float* y, const float* x, std::int64_t rows, std::int64_t n);
void layer_norm_rows(float* y, const float* x, const float* w, const float* b, std::int64_t rows, std::int64_t n,
                     float eps);
// attention.cc: scores and weighted sums through the GEMM (blas.h), the softmax between.
void attention(const AttentionArgs& a);
// embedding.cc: out-of-range ids give zero rows and set *out_of_range.
void embedding(float* out, const std::int64_t* ids, std::int64_t count, const float* weight, std::int64_t num,
               std::int64_t dim, bool* out_of_range);
// conv1d.cc: cols (batch, cin * kernel, lout) from x (batch, cin, len).
void im2col(float* cols, const float* x, const Im2colArgs& a);

}  // namespace streampool::detail::cpu
