#pragma once
// The arguments the ops hand to their kernels, shared by the CPU and CUDA kernels. Internal.

#include <cstdint>

#include "streampool/ops.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {

// Row-major C (batch, m, n) = A (batch, m, k) @ op(B), op(B) = B^T when b_transposed (B stored
// (n, k)), else B (stored (k, n)); element strides between the batch's matrices (0 shares one
// matrix); bias (n) and activation applied to C (fused into the GEMM where the backend can).
struct GemmArgs {
  int batch = 1, m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int lda = 0;
  std::int64_t stride_a = 0;
  const void* b = nullptr;
  int ldb = 0;
  std::int64_t stride_b = 0;
  bool b_transposed = false;
  void* c = nullptr;
  int ldc = 0;
  std::int64_t stride_c = 0;
  const void* bias = nullptr;
  // A bias per row of C (m; a convolution's output channels), added before `act`: on the CPU in
  // the GEMM's pass, on CUDA in one pass after the GEMM (cuBLASLt's epilogue has a bias per
  // column only).
  const void* row_bias = nullptr;
  Activation act = Activation::none;
};

// Elementwise binary over broadcast shapes: strides of 0 repeat an operand.
enum class BinaryOp { add, mul };
struct Broadcast {
  int ndim = 0;
  std::int64_t numel = 0;
  std::int64_t shape[kMaxDims] = {};
  std::int64_t a_strides[kMaxDims] = {};
  std::int64_t b_strides[kMaxDims] = {};
};

struct AttentionArgs {
  int batch = 0, heads = 0, sq = 0, sk = 0, d = 0;
  // Element strides of q, k, v, out in (batch, head, seq) order; the last dim is contiguous.
  std::int64_t q_stride[3] = {}, k_stride[3] = {}, v_stride[3] = {}, o_stride[3] = {};
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const unsigned char* mask = nullptr;  // (batch, sk) contiguous bytes, 1 = padded; or null
  void* out = nullptr;
  bool causal = false;
  float scale = 1.0f;
};

struct Im2colArgs {
  int batch = 0, cin = 0, len = 0, kernel = 0, stride = 1, padding = 0, lout = 0;
  // Rows per sample of the column matrix: 0 means cin * kernel. More (a folded bias, Note
  // [Folded convolution bias]): row cin * kernel is ones, the rows after it zeros.
  int rows = 0;
};

}  // namespace streampool::detail
