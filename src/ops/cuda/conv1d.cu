// CUDA im2col: the column matrix of a 1-D convolution, zero where the window leaves the input.

#include "ops/cuda/common.cuh"

namespace streampool::detail::cuda {
namespace {

// rows: per sample, at least cin * kernel; row cin * kernel is ones, the rows after it zeros.
template <typename T>
__global__ void im2col_kernel(T* __restrict__ cols, const T* __restrict__ x, int batch, int cin, int len, int kernel,
                              int stride, int padding, int lout, int rows) {
  const std::int64_t total = static_cast<std::int64_t>(batch) * rows * lout;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const int window_rows = cin * kernel;
  for (std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; n < total; n += step) {
    const int l = static_cast<int>(n % lout);
    const std::int64_t r = n / lout;
    const int rr = static_cast<int>(r % rows);  // (c, t) within the sample, or a folded bias's row
    const std::int64_t b = r / rows;
    if (rr >= window_rows) {
      cols[n] = from_f<T>(rr == window_rows ? 1.f : 0.f);
      continue;
    }
    const int t = rr % kernel, c = rr / kernel;
    const int p = l * stride - padding + t;
    cols[n] = (p >= 0 && p < len) ? x[(b * cin + c) * len + p] : from_f<T>(0.f);
  }
}

}  // namespace

void im2col(void* cols, const void* x, DType dt, const Im2colArgs& a, void* stream) {
  const int batch = a.batch, cin = a.cin, len = a.len, kernel = a.kernel, stride = a.stride, padding = a.padding,
            lout = a.lout, rows = a.rows ? a.rows : a.cin * a.kernel;
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    im2col_kernel<T><<<grid_for(static_cast<std::int64_t>(batch) * rows * lout, 256), 256, 0, cs(stream)>>>(
        static_cast<T*>(cols), static_cast<const T*>(x), batch, cin, len, kernel, stride, padding, lout, rows);
  });
  check("conv1d (im2col)", dt, [&] {
    return "input " + dims({batch, cin, len}) + ", kernel " + std::to_string(kernel) + ", stride " + std::to_string(stride) +
           ", padding " + std::to_string(padding);
  });
}

}  // namespace streampool::detail::cuda
