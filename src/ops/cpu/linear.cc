// The CPU GEMM: OpenBLAS, then the bias and activation in one pass over the output.

#include <cblas.h>

#include <algorithm>
#include <mutex>

#include "ops/cpu/activation.h"
#include "ops/cpu/kernels.h"
#include "streampool/settings.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace streampool::detail::cpu {

void set_blas_threads(int n) { openblas_set_num_threads(n); }

void ensure_blas_threads() {
  // Every CPU stream has its own worker thread: with one BLAS thread per call, 31 streams use
  // up to 31 cores instead of 31 x cores threads fighting over them (README, "CPU BLAS").
  static std::once_flag once;
  std::call_once(once, [] { set_blas_threads(settings().cpu_blas_threads); });
}

void gemm(const GemmArgs& g) {
  ensure_blas_threads();
  if (g.m == 0 || g.n == 0) return;
  const auto* a = static_cast<const float*>(g.a);
  const auto* b = static_cast<const float*>(g.b);
  auto* c = static_cast<float*>(g.c);
  // The bias goes into C first and the GEMM accumulates onto it (beta = 1), as PyTorch's addmm
  // does: one rounding fewer than adding it afterwards, and no separate pass over the output.
  const auto* bias = static_cast<const float*>(g.bias);
  const auto* row_bias = static_cast<const float*>(g.row_bias);
  for (int i = 0; i < g.batch; ++i) {
    float* ci = c + i * g.stride_c;
    for (int r = 0; r < g.m; ++r) {
      float* row = ci + static_cast<std::ptrdiff_t>(r) * g.ldc;
      if (bias) std::copy(bias, bias + g.n, row);
      else if (row_bias) std::fill(row, row + g.n, row_bias[r]);
      else if (g.k == 0) std::fill(row, row + g.n, 0.0f);
    }
    if (g.k > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, g.b_transposed ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, 1.0f,
                  a + i * g.stride_a, g.lda, b + i * g.stride_b, g.ldb, bias || row_bias ? 1.0f : 0.0f, ci, g.ldc);
    }
    if (g.act != Activation::none) {  // while this matrix is still in cache
      for (int r = 0; r < g.m; ++r) activate_n(ci + static_cast<std::ptrdiff_t>(r) * g.ldc, ci + static_cast<std::ptrdiff_t>(r) * g.ldc, g.n, g.act);
    }
  }
}

}  // namespace streampool::detail::cpu
