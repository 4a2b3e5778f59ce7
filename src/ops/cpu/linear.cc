// The CPU GEMM (blas.h's provider, one thread per call), split into blocks of C by the
// intra-op pool (parallel.h); each block gets its bias first and its activation while still in
// cache.

#include <algorithm>

#include "ops/cpu/activation.h"
#include "ops/cpu/blas.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"

namespace streampool::detail::cpu {

namespace {
// Below this many flops per block, waking a helper costs more than it saves.
constexpr std::int64_t kMinFlopsPerChunk = std::int64_t{1} << 22;

// Rows [r0, r1) x columns [c0, c1) of matrix i of C.
void gemm_block(const GemmArgs& g, int i, int r0, int r1, int c0, int c1) {
  const auto* a = static_cast<const float*>(g.a) + i * g.stride_a + static_cast<std::ptrdiff_t>(r0) * g.lda;
  const auto* b = static_cast<const float*>(g.b) + i * g.stride_b +
                  (g.b_transposed ? static_cast<std::ptrdiff_t>(c0) * g.ldb : c0);
  float* c = static_cast<float*>(g.c) + i * g.stride_c + static_cast<std::ptrdiff_t>(r0) * g.ldc + c0;
  const int m = r1 - r0, n = c1 - c0;
  // The bias goes into C first and the GEMM accumulates onto it (beta = 1), as PyTorch's addmm
  // does: one rounding fewer than adding it afterwards, and no separate pass over the output.
  const auto* bias = static_cast<const float*>(g.bias);
  const auto* row_bias = static_cast<const float*>(g.row_bias);
  for (int r = 0; r < m; ++r) {
    float* row = c + static_cast<std::ptrdiff_t>(r) * g.ldc;
    if (bias) std::copy(bias + c0, bias + c1, row);
    else if (row_bias) std::fill(row, row + n, row_bias[r0 + r]);
    else if (g.k == 0) std::fill(row, row + n, 0.0f);
  }
  if (g.k > 0) sgemm(g.b_transposed, m, n, g.k, a, g.lda, b, g.ldb, bias || row_bias ? 1.0f : 0.0f, c, g.ldc);
  if (g.act != Activation::none) {
    for (int r = 0; r < m; ++r) activate_n(c + static_cast<std::ptrdiff_t>(r) * g.ldc, c + static_cast<std::ptrdiff_t>(r) * g.ldc, n, g.act);
  }
}
}  // namespace

void gemm(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const std::int64_t flops = 2 * std::int64_t{g.m} * g.n * std::max(g.k, 1);
  const int chunks = chunks_for(flops * g.batch, kMinFlopsPerChunk);
  if (g.batch >= chunks) {  // whole matrices per chunk (one chunk: all of them, in order)
    parallel_for(g.batch, chunks, 1, [&](std::int64_t b0, std::int64_t b1) {
      for (auto i = b0; i < b1; ++i) gemm_block(g, static_cast<int>(i), 0, g.m, 0, g.n);
    });
    return;
  }
  // Fewer matrices than chunks: blocks of columns (16, a cache line of floats) or of rows,
  // along the longer side.
  const int per = chunks_for(flops, kMinFlopsPerChunk);
  for (int i = 0; i < g.batch; ++i) {
    if (g.n >= g.m) {
      parallel_for(g.n, per, 16, [&](std::int64_t c0, std::int64_t c1) {
        gemm_block(g, i, 0, g.m, static_cast<int>(c0), static_cast<int>(c1));
      });
    } else {
      parallel_for(g.m, per, 8, [&](std::int64_t r0, std::int64_t r1) {
        gemm_block(g, i, static_cast<int>(r0), static_cast<int>(r1), 0, g.n);
      });
    }
  }
}

}  // namespace streampool::detail::cpu
