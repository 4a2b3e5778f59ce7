// CPU im2col: the column matrix of a 1-D convolution, zero where the window leaves the input,
// with a folded bias's rows after it (Im2colArgs::rows).

#include <algorithm>

#include "ops/cpu/kernels.h"
#include "ops/cpu/parallel.h"

namespace streampool::detail::cpu {

void im2col(float* cols, const float* x, const Im2colArgs& a) {
  const int cin = a.cin, len = a.len, kernel = a.kernel, stride = a.stride, padding = a.padding, lout = a.lout;
  // cols (batch, cin * kernel, lout); (batch, channel) planes over the intra-op pool. A row's
  // window stays inside the input for one contiguous range of l: zeros on either side, a copy
  // between (a per-element bounds check cost 15% of a conv1d request).
  const std::int64_t planes = static_cast<std::int64_t>(a.batch) * cin;
  const std::int64_t window_rows = static_cast<std::int64_t>(cin) * kernel, rows = a.rows ? a.rows : window_rows;
  parallel_for(planes, chunks_for(planes * kernel * lout, 1 << 15), 1, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t bc = p0; bc < p1; ++bc) {
      const float* in = x + bc * len;
      const std::int64_t b = bc / cin, c = bc % cin;
      for (int t = 0; t < kernel; ++t) {
        float* row = cols + (b * rows + c * kernel + t) * lout;
        // p = l * stride - padding + t in [0, len)  <=>  l in [lo, hi)
        const int first = padding - t;  // p >= 0 <=> l * stride >= first
        const int lo = std::clamp(first <= 0 ? 0 : (first + stride - 1) / stride, 0, lout);
        const int hi = std::clamp(len + first <= 0 ? 0 : (len + first - 1) / stride + 1, lo, lout);
        std::fill(row, row + lo, 0.0f);
        const float* src = in + (static_cast<std::int64_t>(lo) * stride - first);
        if (stride == 1) {
          std::copy(src, src + (hi - lo), row + lo);
        } else {
          for (int l = lo; l < hi; ++l) row[l] = src[static_cast<std::int64_t>(l - lo) * stride];
        }
        std::fill(row + hi, row + lout, 0.0f);
      }
    }
  });
  for (std::int64_t b = 0; b < a.batch && rows > window_rows; ++b) {
    float* extra = cols + (b * rows + window_rows) * lout;
    std::fill(extra, extra + lout, 1.0f);  // the folded bias's row
    std::fill(extra + lout, extra + (rows - window_rows) * lout, 0.0f);
  }
}

}  // namespace streampool::detail::cpu
