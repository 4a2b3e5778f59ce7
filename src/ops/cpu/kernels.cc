// CPU kernels (float32). GEMMs go to OpenBLAS; the rest are plain loops the compiler
// vectorizes. They run inside stream tasks, one stream's worker thread each.

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "streampool/settings.h"

#include "ops/op_common.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace streampool::detail::cpu {

void set_blas_threads(int n) { openblas_set_num_threads(n); }

void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, bool b_transposed, float* c, int ldc,
          float beta) {
  // Every CPU stream has its own worker thread: with one BLAS thread per call, 31 streams use
  // up to 31 cores instead of 31 x cores threads fighting over them (README, "CPU BLAS").
  static std::once_flag once;
  std::call_once(once, [] { set_blas_threads(settings().cpu_blas_threads); });
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[i * ldc + j] *= beta;
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb,
              beta, c, ldc);
}

namespace {

inline float act_one(float x, Activation act) {
  switch (act) {
    case Activation::none:
      return x;
    case Activation::relu:
      return x > 0 ? x : 0.0f;
    case Activation::gelu:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Activation::gelu_tanh: {
      const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(u));
    }
    case Activation::silu:
      return x / (1.0f + std::exp(-x));
    case Activation::tanh:
      return std::tanh(x);
  }
  return x;
}

}  // namespace

void bias_activation(float* y, std::int64_t rows, std::int64_t cols, const float* bias, Activation act) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
    if (bias)
      for (std::int64_t c = 0; c < cols; ++c) row[c] += bias[c];
    if (act != Activation::none)
      for (std::int64_t c = 0; c < cols; ++c) row[c] = act_one(row[c], act);
  }
}

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

void softmax_rows(float* y, const float* x, std::int64_t rows, std::int64_t n) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * n;
    float* out = y + r * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, in[i]);
    double sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      out[i] = std::exp(in[i] - mx);
      sum += out[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (std::int64_t i = 0; i < n; ++i) out[i] *= inv;
  }
}

void layer_norm_rows(float* y, const float* x, const float* w, const float* b, std::int64_t rows, std::int64_t n,
                     float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * n;
    float* out = y + r * n;
    double mean = 0;
    for (std::int64_t i = 0; i < n; ++i) mean += in[i];
    mean /= static_cast<double>(n);
    double var = 0;
    for (std::int64_t i = 0; i < n; ++i) var += (in[i] - mean) * (in[i] - mean);
    var /= static_cast<double>(n);
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float m = static_cast<float>(mean);
    for (std::int64_t i = 0; i < n; ++i) out[i] = (in[i] - m) * rstd * w[i] + b[i];
  }
}

void attention(const AttentionArgs& a) {
  std::vector<float> scores(static_cast<std::size_t>(a.sk));
  const auto* q = static_cast<const float*>(a.q);
  const auto* k = static_cast<const float*>(a.k);
  const auto* v = static_cast<const float*>(a.v);
  auto* o = static_cast<float*>(a.out);
  for (int bi = 0; bi < a.batch; ++bi) {
    for (int h = 0; h < a.heads; ++h) {
      for (int i = 0; i < a.sq; ++i) {
        const float* qi = q + bi * a.q_stride[0] + h * a.q_stride[1] + i * a.q_stride[2];
        float* oi = o + bi * a.o_stride[0] + h * a.o_stride[1] + i * a.o_stride[2];
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < a.sk; ++j) {
          const bool masked = (a.causal && j > i) || (a.mask && a.mask[bi * a.sk + j]);
          if (masked) {
            scores[j] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const float* kj = k + bi * a.k_stride[0] + h * a.k_stride[1] + j * a.k_stride[2];
          float s = 0;
          for (int d = 0; d < a.d; ++d) s += qi[d] * kj[d];
          scores[j] = s * a.scale;
          // A NaN score (NaN in q or k, or a NaN scale) must reach the output, as in PyTorch:
          // std::max would drop it and a row of NaN scores would read as "every key masked".
          if (!(scores[j] <= mx) && !std::isnan(mx)) mx = scores[j];
        }
        for (int d = 0; d < a.d; ++d) oi[d] = 0;
        if (mx == -std::numeric_limits<float>::infinity()) continue;  // every key masked: zeros
        double sum = 0;
        for (int j = 0; j < a.sk; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int j = 0; j < a.sk; ++j) {
          if (scores[j] == 0) continue;
          const float p = scores[j] * inv;
          const float* vj = v + bi * a.v_stride[0] + h * a.v_stride[1] + j * a.v_stride[2];
          for (int d = 0; d < a.d; ++d) oi[d] += p * vj[d];
        }
      }
    }
  }
}

void embedding(float* out, const std::int64_t* ids, std::int64_t count, const float* weight, std::int64_t num,
               std::int64_t dim, bool* out_of_range) {
  for (std::int64_t i = 0; i < count; ++i) {
    std::int64_t id = ids[i];
    if (id < 0 || id >= num) {
      *out_of_range = true;
      std::memset(out + i * dim, 0, sizeof(float) * dim);
      continue;
    }
    std::memcpy(out + i * dim, weight + id * dim, sizeof(float) * dim);
  }
}

void im2col(float* cols, const float* x, int batch, int cin, int len, int kernel, int stride, int padding, int lout) {
  // cols (batch, cin * kernel, lout)
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < cin; ++c)
      for (int t = 0; t < kernel; ++t) {
        float* row = cols + ((static_cast<std::int64_t>(b) * cin + c) * kernel + t) * lout;
        const float* in = x + (static_cast<std::int64_t>(b) * cin + c) * len;
        for (int l = 0; l < lout; ++l) {
          const int p = l * stride - padding + t;
          row[l] = (p >= 0 && p < len) ? in[p] : 0.0f;
        }
      }
}

}  // namespace streampool::detail::cpu
