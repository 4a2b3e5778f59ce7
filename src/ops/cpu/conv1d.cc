// CPU im2col: the column matrix of a 1-D convolution, zero where the window leaves the input.

#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"

namespace streampool::detail::cpu {

void im2col(float* cols, const float* x, const Im2colArgs& a) {
  const int batch = a.batch, cin = a.cin, len = a.len, kernel = a.kernel, stride = a.stride, padding = a.padding,
            lout = a.lout;
  // cols (batch, cin * kernel, lout)
  // (batch, channel) rows over the intra-op pool.
  const std::int64_t planes = static_cast<std::int64_t>(batch) * cin;
  parallel_for(planes, chunks_for(planes * kernel * lout, 1 << 15), 1, [&](std::int64_t p0, std::int64_t p1) {
  for (std::int64_t bc = p0; bc < p1; ++bc) {
    const int b = static_cast<int>(bc / cin), c = static_cast<int>(bc % cin);
      for (int t = 0; t < kernel; ++t) {
        float* row = cols + ((static_cast<std::int64_t>(b) * cin + c) * kernel + t) * lout;
        const float* in = x + (static_cast<std::int64_t>(b) * cin + c) * len;
        for (int l = 0; l < lout; ++l) {
          const int p = l * stride - padding + t;
          row[l] = (p >= 0 && p < len) ? in[p] : 0.0f;
        }
      }
  }
  });
}

}  // namespace streampool::detail::cpu
