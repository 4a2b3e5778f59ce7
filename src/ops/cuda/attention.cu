// CUDA attention: one warp per query, key/value tiles of 32 shared by the block's warps,
// online softmax; never writes a (Sq x Sk) matrix.

#include "ops/cuda/common.cuh"

namespace streampool::detail::cuda {
namespace {

constexpr int kAttnWarps = 8;
constexpr int kTile = 32;

template <typename T, int kD>
__global__ void __launch_bounds__(kAttnWarps * 32) attention_kernel(AttentionArgs a) {
  constexpr int kPer = (kD + 31) / 32;  // output dims per lane
  __shared__ float ks[kTile][kD + 1];   // +1: lanes reading one column hit different banks
  __shared__ float vs[kTile][kD];
  __shared__ float qs[kAttnWarps][kD];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int qi = blockIdx.x * kAttnWarps + warp;
  const bool active = qi < a.sq;
  const T* q = static_cast<const T*>(a.q) + b * a.q_stride[0] + h * a.q_stride[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_stride[0] + h * a.k_stride[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_stride[0] + h * a.v_stride[1];
  if (active) {
    for (int d = lane; d < a.d; d += 32) qs[warp][d] = to_f(q[qi * a.q_stride[2] + d]) * a.scale;
  }
  float m = -FLT_MAX, l = 0.f, acc[kPer];
  bool saw_nan = false;  // a NaN score (NaN in q or k, or a NaN scale): the row is NaN, as in PyTorch
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0.f;
  // Causal: no query of this block looks past its last row.
  const int last_q = min(a.sq, (blockIdx.x + 1) * kAttnWarps) - 1;
  const int kend = a.causal ? min(a.sk, last_q + 1) : a.sk;
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * a.d; idx += blockDim.x) {
      const int j = idx / a.d, d = idx % a.d, kj = k0 + j;
      const bool in = kj < a.sk;
      ks[j][d] = in ? to_f(k[kj * a.k_stride[2] + d]) : 0.f;
      vs[j][d] = in ? to_f(v[kj * a.v_stride[2] + d]) : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    const int kj = k0 + lane;
    bool valid = kj < a.sk && !(a.causal && kj > qi) && !(a.mask && a.mask[b * a.sk + kj]);
    float s = -FLT_MAX;
    if (valid) {
      s = 0.f;
#pragma unroll 8
      for (int d = 0; d < a.d; ++d) s += qs[warp][d] * ks[lane][d];
    }
    // fmaxf drops NaN, so the max alone would hide it: look for it first (warp-uniform).
    saw_nan |= __any_sync(0xffffffffu, valid && isnan(s));
    const float tile_max = warp_max(s);
    if (tile_max == -FLT_MAX) continue;  // every key of this tile masked for this query
    const float m_new = fmaxf(m, tile_max);
    const float alpha = __expf(m - m_new);
    const float p = valid ? __expf(s - m_new) : 0.f;
    l = l * alpha + warp_sum(p);
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc[t] *= alpha;
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      if (pj == 0.f) continue;
#pragma unroll
      for (int t = 0; t < kPer; ++t) {
        const int d = lane + 32 * t;
        if (d < kD) acc[t] += pj * vs[j][d];
      }
    }
    m = m_new;
  }
  if (!active) return;
  T* o = static_cast<T*>(a.out) + b * a.o_stride[0] + h * a.o_stride[1] + qi * a.o_stride[2];
  const float inv = l > 0.f ? 1.f / l : 0.f;  // a query whose every key is masked gets zeros
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int d = lane + 32 * t;
    if (d < a.d) o[d] = from_f<T>(saw_nan ? __int_as_float(0x7fc00000) : acc[t] * inv);
  }
}

}  // namespace

void attention(const AttentionArgs& a, DType dt, void* stream) {
  dim3 grid((a.sq + kAttnWarps - 1) / kAttnWarps, a.batch * a.heads);
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    if (a.d <= 32) attention_kernel<T, 32><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else if (a.d <= 64) attention_kernel<T, 64><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else if (a.d <= 128) attention_kernel<T, 128><<<grid, kAttnWarps * 32, 0, cs(stream)>>>(a);
    else throw InvalidArgument("attention: head dimension above 128 is not supported on CUDA");
  });
  check("scaled_dot_product_attention", dt, [&] {
    return "q " + dims({a.batch, a.heads, a.sq, a.d}) + ", k and v " + dims({a.batch, a.heads, a.sk, a.d});
  });
}

}  // namespace streampool::detail::cuda
