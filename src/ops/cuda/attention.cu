// CUDA attention, online softmax, never writing a (Sq x Sk) matrix to memory. Two kernels:
// - float16 / bfloat16 with a head dimension of 32, 64 or 128: tensor cores (WMMA). A block
//   takes 64 queries of one (batch, head), a warp 16 of them; per tile of 64 keys, S = Q K^T and
//   O += P V run as 16x16x16 fragments with float accumulation, the softmax between them in
//   shared memory (P rounded to the input dtype, as PyTorch's flash kernels do).
// - otherwise (float32, other head sizes): CUDA cores, one warp per query, key/value tiles of
//   32 shared by the block's warps.
// Measured on an H200 (benchmarks/encoder_ops.cc, batch 256 x 8 heads x 128 x 64, float16): the
// CUDA-core kernel alone took 1.40 ms, 70% of the whole encoder layer.

#include <mma.h>

#include <atomic>

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

// ---- tensor cores ----

constexpr int kTcWarps = 4;
constexpr int kTcQ = 16 * kTcWarps;  // queries per block
constexpr int kTcK = 64;             // keys per tile

// Row strides are padded (rows of 64 values would put every row on the same shared-memory banks):
// +8 halves for the fragments' operands, +4 floats for S and O; lane pairs own rows and take
// alternate columns, so the softmax's accesses hit at most two lanes per bank.
template <typename T, int kD>
struct TcShared {
  static constexpr int kLdH = kD + 8, kLdP = kTcK + 8, kLdS = kTcK + 4, kLdO = kD + 4;
  T q[kTcQ][kLdH];
  T k[kTcK][kLdH];
  T v[kTcK][kLdH];
  float s[kTcWarps][16][kLdS];
  T p[kTcWarps][16][kLdP];
  float o[kTcWarps][16][kLdO];
  float m[kTcWarps][16], l[kTcWarps][16];
  int nan[kTcWarps][16];
};

// Copies rows [r0, r0 + n) of a (rows, kD) operand with row stride `stride` into shared memory,
// zeros past `limit`; 16-byte vectors when the caller checked the alignment.
template <typename T, int kD, int kRows, bool kVec>
__device__ __forceinline__ void load_rows(T (*dst)[kD + 8], const T* src, std::int64_t stride, int r0, int limit) {
  if constexpr (kVec) {
    constexpr int kPerRow = kD / 8;  // 8 halves = 16 bytes
    for (int idx = threadIdx.x; idx < kRows * kPerRow; idx += blockDim.x) {
      const int j = idx / kPerRow, c = (idx % kPerRow) * 8, row = r0 + j;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (row < limit) val = *reinterpret_cast<const uint4*>(src + row * stride + c);
      *reinterpret_cast<uint4*>(&dst[j][c]) = val;
    }
  } else {
    const T zero = from_f<T>(0.f);
    for (int idx = threadIdx.x; idx < kRows * kD; idx += blockDim.x) {
      const int j = idx / kD, d = idx % kD, row = r0 + j;
      dst[j][d] = row < limit ? src[row * stride + d] : zero;
    }
  }
}

template <typename T, int kD, bool kVec>
__global__ void __launch_bounds__(kTcWarps * 32) attention_tc_kernel(AttentionArgs a) {
  namespace w = nvcuda::wmma;
  using Sh = TcShared<T, kD>;
  extern __shared__ __align__(128) unsigned char raw[];
  auto& sm = *reinterpret_cast<Sh*>(raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, tid = threadIdx.x;
  const int bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int q0 = blockIdx.x * kTcQ;
  const T* q = static_cast<const T*>(a.q) + b * a.q_stride[0] + h * a.q_stride[1];
  const T* k = static_cast<const T*>(a.k) + b * a.k_stride[0] + h * a.k_stride[1];
  const T* v = static_cast<const T*>(a.v) + b * a.v_stride[0] + h * a.v_stride[1];
  load_rows<T, kD, kTcQ, kVec>(sm.q, q, a.q_stride[2], q0, a.sq);
  for (int idx = tid; idx < kTcWarps * 16 * Sh::kLdO; idx += blockDim.x) (&sm.o[0][0][0])[idx] = 0.f;
  if (tid < kTcWarps * 16) {
    (&sm.m[0][0])[tid] = -FLT_MAX;
    (&sm.l[0][0])[tid] = 0.f;
    (&sm.nan[0][0])[tid] = 0;
  }
  const int r = lane >> 1, side = lane & 1;  // a lane pair per row; columns side, side + 2, ...
  const int qi = q0 + warp * 16 + r;
  const int last_q = min(a.sq, q0 + kTcQ) - 1;
  const int kend = a.causal ? min(a.sk, last_q + 1) : a.sk;
  for (int k0 = 0; k0 < kend; k0 += kTcK) {
    __syncthreads();  // every warp is done with the previous tile
    load_rows<T, kD, kTcK, kVec>(sm.k, k, a.k_stride[2], k0, a.sk);
    load_rows<T, kD, kTcK, kVec>(sm.v, v, a.v_stride[2], k0, a.sk);
    __syncthreads();
    {  // S = Q K^T for the warp's 16 queries
      w::fragment<w::accumulator, 16, 16, 16, float> acc[kTcK / 16];
#pragma unroll
      for (int j = 0; j < kTcK / 16; ++j) w::fill_fragment(acc[j], 0.f);
#pragma unroll
      for (int kk = 0; kk < kD; kk += 16) {
        w::fragment<w::matrix_a, 16, 16, 16, T, w::row_major> fa;
        w::load_matrix_sync(fa, &sm.q[warp * 16][kk], Sh::kLdH);
#pragma unroll
        for (int j = 0; j < kTcK / 16; ++j) {
          w::fragment<w::matrix_b, 16, 16, 16, T, w::col_major> fb;  // K^T: element (d, key) at k[key][d]
          w::load_matrix_sync(fb, &sm.k[j * 16][kk], Sh::kLdH);
          w::mma_sync(acc[j], fa, fb, acc[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < kTcK / 16; ++j) w::store_matrix_sync(&sm.s[warp][0][j * 16], acc[j], Sh::kLdS, w::mem_row_major);
    }
    __syncwarp();
    {  // online softmax of the warp's rows; P in the input dtype for the next product
      constexpr int kHalf = kTcK / 2;
      float sv[kHalf];
      float mx = -FLT_MAX;
      bool nan = false;
#pragma unroll
      for (int c = 0; c < kHalf; ++c) {
        const int col = 2 * c + side, kj = k0 + col;
        const bool valid = qi < a.sq && kj < a.sk && !(a.causal && kj > qi) && !(a.mask && a.mask[b * a.sk + kj]);
        const float x = sm.s[warp][r][col] * a.scale;
        nan |= valid && isnan(x);
        sv[c] = valid ? x : -FLT_MAX;
        if (valid) mx = fmaxf(mx, x);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      nan |= __shfl_xor_sync(0xffffffffu, nan ? 1 : 0, 1) != 0;
      const float m_old = sm.m[warp][r];
      const float m_new = fmaxf(m_old, mx);
      const float alpha = __expf(m_old - m_new);
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < kHalf; ++c) {
        const float pv = sv[c] == -FLT_MAX || mx == -FLT_MAX ? 0.f : __expf(sv[c] - m_new);
        sum += pv;
        sm.p[warp][r][2 * c + side] = from_f<T>(pv);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      __syncwarp();
      if (side == 0) {
        sm.l[warp][r] = sm.l[warp][r] * alpha + sum;
        sm.m[warp][r] = m_new;
        sm.nan[warp][r] |= nan ? 1 : 0;
      }
#pragma unroll 8
      for (int d = side; d < kD; d += 2) sm.o[warp][r][d] *= alpha;
    }
    __syncwarp();
    // O += P V
#pragma unroll
    for (int dj = 0; dj < kD / 16; ++dj) {
      w::fragment<w::accumulator, 16, 16, 16, float> oacc;
      w::load_matrix_sync(oacc, &sm.o[warp][0][dj * 16], Sh::kLdO, w::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTcK; kk += 16) {
        w::fragment<w::matrix_a, 16, 16, 16, T, w::row_major> pa;
        w::fragment<w::matrix_b, 16, 16, 16, T, w::row_major> vb;
        w::load_matrix_sync(pa, &sm.p[warp][0][kk], Sh::kLdP);
        w::load_matrix_sync(vb, &sm.v[kk][dj * 16], Sh::kLdH);
        w::mma_sync(oacc, pa, vb, oacc);
      }
      w::store_matrix_sync(&sm.o[warp][0][dj * 16], oacc, Sh::kLdO, w::mem_row_major);
    }
    __syncwarp();
  }
  __syncthreads();
  if (qi >= a.sq) return;
  T* o = static_cast<T*>(a.out) + b * a.o_stride[0] + h * a.o_stride[1] + qi * a.o_stride[2];
  const float l = sm.l[warp][r];
  const float inv = l > 0.f ? 1.f / l : 0.f;  // a query whose every key is masked gets zeros
  const bool nan = sm.nan[warp][r] != 0;      // a NaN score: the row is NaN, as in PyTorch
  for (int d = side; d < kD; d += 2) o[d] = from_f<T>(nan ? __int_as_float(0x7fc00000) : sm.o[warp][r][d] * inv);
}

template <typename T, int kD, bool kVec>
void launch_tc(const AttentionArgs& a, void* stream) {
  constexpr int bytes = sizeof(TcShared<T, kD>);
  // Above 48 KB of shared memory a kernel must opt in, once per kernel and device (the first
  // call runs eagerly: the graph path captures only after an eager run).
  if constexpr (bytes > 48 * 1024) {
    static std::atomic<bool> done[64];
    int dev = 0;
    STREAMPOOL_CUDA_CHECK(cudaGetDevice(&dev), "scaled_dot_product_attention");
    if (dev >= 0 && dev < 64 && !done[dev].load(std::memory_order_acquire)) {
      STREAMPOOL_CUDA_CHECK(cudaFuncSetAttribute(attention_tc_kernel<T, kD, kVec>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                            "scaled_dot_product_attention");
      done[dev].store(true, std::memory_order_release);
    }
  }
  dim3 grid((a.sq + kTcQ - 1) / kTcQ, a.batch * a.heads);
  attention_tc_kernel<T, kD, kVec><<<grid, kTcWarps * 32, bytes, cs(stream)>>>(a);
}

}  // namespace

void attention(const AttentionArgs& a, DType dt, void* stream) {
  dim3 grid((a.sq + kAttnWarps - 1) / kAttnWarps, a.batch * a.heads);
  if (dt != DType::float32 && (a.d == 32 || a.d == 64 || a.d == 128)) {
    dispatch(dt, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, float>) {
        // 16-byte loads where every row of q, k and v starts 16-byte aligned.
        auto aligned = [](const void* p, const std::int64_t* st) {
          return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && st[0] % 8 == 0 && st[1] % 8 == 0 && st[2] % 8 == 0;
        };
        const bool vec = aligned(a.q, a.q_stride) && aligned(a.k, a.k_stride) && aligned(a.v, a.v_stride);
        auto go = [&](auto d) {
          constexpr int kD = decltype(d)::value;
          if (vec) launch_tc<T, kD, true>(a, stream);
          else launch_tc<T, kD, false>(a, stream);
        };
        if (a.d == 32) go(std::integral_constant<int, 32>{});
        else if (a.d == 64) go(std::integral_constant<int, 64>{});
        else go(std::integral_constant<int, 128>{});
      }
    });
    check("scaled_dot_product_attention", dt, [&] {
      return "q " + dims({a.batch, a.heads, a.sq, a.d}) + ", k and v " + dims({a.batch, a.heads, a.sk, a.d});
    });
    return;
  }
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
