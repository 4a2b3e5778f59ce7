// The CPU GEMM: OpenBLAS, then the bias and activation in one pass over the output.

#include <cblas.h>

#include <mutex>

#include "ops/cpu/activation.h"
#include "ops/cpu/kernels.h"
#include "streampool/settings.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace streampool::detail::cpu {

void set_blas_threads(int n) { openblas_set_num_threads(n); }

void gemm(const GemmArgs& g) {
  // Every CPU stream has its own worker thread: with one BLAS thread per call, 31 streams use
  // up to 31 cores instead of 31 x cores threads fighting over them (README, "CPU BLAS").
  static std::once_flag once;
  std::call_once(once, [] { set_blas_threads(settings().cpu_blas_threads); });
  if (g.m == 0 || g.n == 0) return;
  const auto* a = static_cast<const float*>(g.a);
  const auto* b = static_cast<const float*>(g.b);
  auto* c = static_cast<float*>(g.c);
  for (int i = 0; i < g.batch; ++i) {
    float* ci = c + i * g.stride_c;
    if (g.k == 0) {
      for (int r = 0; r < g.m; ++r)
        for (int j = 0; j < g.n; ++j) ci[r * g.ldc + j] = 0.0f;
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, g.b_transposed ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, 1.0f,
                  a + i * g.stride_a, g.lda, b + i * g.stride_b, g.ldb, 0.0f, ci, g.ldc);
    }
  }
  if (g.bias || g.act != Activation::none) {
    bias_activation(c, static_cast<std::int64_t>(g.batch) * g.m, g.n, static_cast<const float*>(g.bias), g.act);
  }
}

void bias_activation(float* y, std::int64_t rows, std::int64_t cols, const float* bias, Activation act) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
    if (bias)
      for (std::int64_t c = 0; c < cols; ++c) row[c] += bias[c];
    if (act != Activation::none)
      for (std::int64_t c = 0; c < cols; ++c) row[c] = act_one(row[c], act);
  }
}

}  // namespace streampool::detail::cpu
