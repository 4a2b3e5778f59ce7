#pragma once
// Shared by the ops: argument checks, the current stream, and the kernel entry points of each
// backend. Internal.

#include <string>

#include "core/runtime.h"
#include "streampool/error.h"
#include "streampool/ops.h"
#include "streampool/stream_pool.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {

// "linear: <why> (input Tensor(float32, (2, 3), cuda:0), weight ...)"
[[noreturn]] void op_error(const char* op, const std::string& why, std::initializer_list<const Tensor*> tensors);

// A defined floating tensor.
void check_floating(const char* op, const Tensor& t, const char* name);
// Same device and dtype as `ref`.
void check_like(const char* op, const Tensor& ref, const Tensor& t, const char* name);
void check_dim(const char* op, const Tensor& t, const char* name, std::int64_t dims);

inline StreamImpl& current_impl(const Device& d) { return stream_impl(current_stream(d)); }

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

namespace cpu {
// C (M, N) row-major = A (M, K) @ op(B): B is (N, K) when b_transposed, else (K, N).
void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, bool b_transposed, float* c, int ldc,
          float beta = 0.0f);
void bias_activation(float* y, std::int64_t rows, std::int64_t cols, const float* bias, Activation act);
void unary(float* y, const float* x, std::int64_t n, Activation act);
void binary(float* y, const float* a, const float* b, const Broadcast& bc, BinaryOp op);
void softmax_rows(float* y, const float* x, std::int64_t rows, std::int64_t n);
void layer_norm_rows(float* y, const float* x, const float* w, const float* b, std::int64_t rows, std::int64_t n,
                     float eps);
void attention(const AttentionArgs& a);
void embedding(float* out, const std::int64_t* ids, std::int64_t count, const float* weight, std::int64_t num,
               std::int64_t dim, bool* out_of_range);
void im2col(float* cols, const float* x, int batch, int cin, int len, int kernel, int stride, int padding, int lout);
void set_blas_threads(int n);
}  // namespace cpu

#ifdef STREAMPOOL_WITH_CUDA
namespace cuda {
// All kernels run on `stream` (a cudaStream_t) with dtype float32, float16 or bfloat16.
void bias_activation(void* y, DType dt, std::int64_t rows, std::int64_t cols, const void* bias, Activation act,
                     void* stream);
void unary(void* y, const void* x, DType dt, std::int64_t n, Activation act, void* stream);
void binary(void* y, const void* a, const void* b, DType dt, const Broadcast& bc, BinaryOp op, void* stream);
void softmax_rows(void* y, const void* x, DType dt, std::int64_t rows, std::int64_t n, void* stream);
void layer_norm_rows(void* y, const void* x, const void* w, const void* b, DType dt, std::int64_t rows,
                     std::int64_t n, float eps, void* stream);
void attention(const AttentionArgs& a, DType dt, void* stream);
void embedding(void* out, const std::int64_t* ids, std::int64_t count, const void* weight, DType dt,
               std::int64_t num, std::int64_t dim, const Device& device, void* stream);
void im2col(void* cols, const void* x, DType dt, int batch, int cin, int len, int kernel, int stride, int padding,
            int lout, void* stream);
void max_abs_diff(float* acc, const void* a, const void* b, DType dt, std::int64_t n, void* stream);

// GEMMs through cuBLASLt / cuBLAS with handles from a per-thread pool (blas.cc).
// Row-major C (batch, m, n) = A (batch, m, k) @ op(B) with element strides between batches
// (0 shares a matrix); bias (n) and activation fused where the epilogue supports it.
void gemm(const Device& device, DType dt, int batch, int m, int n, int k, const void* a, int lda,
          std::int64_t stride_a, const void* b, int ldb, std::int64_t stride_b, bool b_transposed, void* c, int ldc,
          std::int64_t stride_c, const void* bias, Activation act, void* stream);
}  // namespace cuda
#endif

}  // namespace streampool::detail
