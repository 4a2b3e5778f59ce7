// CPU attention: per query, scores over all keys, softmax, weighted sum of values.

#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/kernels.h"

namespace streampool::detail::cpu {

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

}  // namespace streampool::detail::cpu
