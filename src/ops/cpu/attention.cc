// CPU attention through the GEMM: per (batch, head) and block of queries, the scores Q K^T in
// one BLAS call, the masked softmax per row, then P V in a second call. A scalar loop over
// queries and keys ran at a tenth of the GEMM's speed (issue 16: ~6.7 ms of an encoder request).

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/blas.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace streampool::detail::cpu {

namespace {
// Queries per block: bounds the scores buffer (kBlock x sk floats) for long sequences.
constexpr int kBlock = 256;
// BLAS wants a leading dimension of at least the row length; a matrix of one row may come
// with any stride (a view of a size-1 dimension), which it never uses.
int ld(std::int64_t stride, int rows, int cols) { return rows <= 1 ? std::max(cols, 1) : static_cast<int>(stride); }
}  // namespace

void attention(const AttentionArgs& a) {
  const auto* q = static_cast<const float*>(a.q);
  const auto* k = static_cast<const float*>(a.k);
  const auto* v = static_cast<const float*>(a.v);
  auto* o = static_cast<float*>(a.out);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  // (batch, head) pairs over the intra-op pool: each chunk with its own scores buffer.
  const std::int64_t pairs = std::int64_t{a.batch} * a.heads;
  const std::int64_t flops_per_pair = 4 * std::int64_t{a.sq} * std::max(a.sk, 1) * std::max(a.d, 1);
  parallel_for(pairs, chunks_for(pairs * flops_per_pair, std::int64_t{1} << 21), 1, [&](std::int64_t p0, std::int64_t p1) {
  std::vector<float> p(static_cast<std::size_t>(std::min(a.sq, kBlock)) * static_cast<std::size_t>(std::max(a.sk, 1)));
  for (std::int64_t pi = p0; pi < p1; ++pi) {
    const int bi = static_cast<int>(pi / a.heads), h = static_cast<int>(pi % a.heads);
    const unsigned char* mask = a.mask ? a.mask + static_cast<std::ptrdiff_t>(bi) * a.sk : nullptr;
    {
      const float* qh = q + bi * a.q_stride[0] + h * a.q_stride[1];
      const float* kh = k + bi * a.k_stride[0] + h * a.k_stride[1];
      const float* vh = v + bi * a.v_stride[0] + h * a.v_stride[1];
      float* oh = o + bi * a.o_stride[0] + h * a.o_stride[1];
      for (int i0 = 0; i0 < a.sq; i0 += kBlock) {
        const int rows = std::min(kBlock, a.sq - i0);
        float* oi0 = oh + i0 * a.o_stride[2];
        if (a.sk == 0 || a.d == 0) {
          for (int r = 0; r < rows; ++r)
            for (int d = 0; d < a.d; ++d) oi0[r * a.o_stride[2] + d] = 0;
          continue;
        }
        // Scores of this block: (rows x sk) = Q_block K^T.
        sgemm(true, rows, a.sk, a.d, qh + i0 * a.q_stride[2], ld(a.q_stride[2], rows, a.d), kh,
              ld(a.k_stride[2], a.sk, a.d), 0.0f, p.data(), a.sk);
        for (int r = 0; r < rows; ++r) {
          const int i = i0 + r;
          float* s = p.data() + static_cast<std::ptrdiff_t>(r) * a.sk;
          float mx = neg_inf;
          for (int j = 0; j < a.sk; ++j) {
            if ((a.causal && j > i) || (mask && mask[j])) {
              s[j] = neg_inf;
              continue;
            }
            s[j] *= a.scale;
            // A NaN score (NaN in q or k, or a NaN scale) must reach the output, as in PyTorch:
            // std::max would drop it and a row of NaN scores would read as "every key masked".
            if (!(s[j] <= mx) && !std::isnan(mx)) mx = s[j];
          }
          if (mx == neg_inf) {  // every key masked: a zero row (the GEMM below gives zeros)
            std::fill(s, s + a.sk, 0.0f);
            continue;
          }
          for (int j = 0; j < a.sk; ++j) s[j] -= mx;
          exp_n(s, s, a.sk);
          double sum = 0;
          for (int j = 0; j < a.sk; ++j) sum += s[j];
          const float inv = static_cast<float>(1.0 / sum);
          for (int j = 0; j < a.sk; ++j) s[j] *= inv;
        }
        // Out block: (rows x d) = P V.
        sgemm(false, rows, a.d, a.sk, p.data(), a.sk, vh, ld(a.v_stride[2], a.sk, a.d), 0.0f, oi0,
              ld(a.o_stride[2], rows, a.d));
      }
    }
  }
  });
}

}  // namespace streampool::detail::cpu
