// CPU softmax and layer norm over rows (double accumulators).

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace streampool::detail::cpu {

namespace {
// Rows per chunk of the intra-op pool: at least this many floats each.
constexpr std::int64_t kMinFloatsPerChunk = 1 << 15;
}  // namespace

void softmax_rows(float* y, const float* x, std::int64_t rows, std::int64_t n) {
  parallel_for(rows, chunks_for(rows * n, kMinFloatsPerChunk), 1, [&](std::int64_t r0, std::int64_t r1) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* in = x + r * n;
    float* out = y + r * n;
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, in[i]);
    for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] - mx;
    exp_n(out, out, n);
    double sum = 0;
    for (std::int64_t i = 0; i < n; ++i) sum += out[i];
    const float inv = static_cast<float>(1.0 / sum);
    for (std::int64_t i = 0; i < n; ++i) out[i] *= inv;
  }
  });
}

void layer_norm_rows(float* y, const float* x, const float* w, const float* b, std::int64_t rows, std::int64_t n,
                     float eps) {
  parallel_for(rows, chunks_for(rows * n, kMinFloatsPerChunk), 1, [&](std::int64_t r0, std::int64_t r1) {
  for (std::int64_t r = r0; r < r1; ++r) {
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
  });
}

}  // namespace streampool::detail::cpu
