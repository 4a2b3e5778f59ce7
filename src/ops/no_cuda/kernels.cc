// The CUDA kernels of the ops in a build without CUDA (Note [Backend registry]): no CUDA tensor
// can exist there, so these are reached only through a bug, and then say so.

#include <string>

#include "ops/cuda/kernels.h"
#include "streampool/error.h"

namespace streampool::detail::cuda {
namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw DeviceError(std::string(op) + ": streampool was built without the CUDA backend");
}
}  // namespace

void gemm(const Device&, DType, const GemmArgs&, void*) { no_cuda("gemm"); }
void bias_activation(void*, DType, std::int64_t, std::int64_t, const void*, Activation, void*, std::int64_t) {
  no_cuda("bias_activation");
}
void unary(void*, const void*, DType, std::int64_t, Activation, void*) { no_cuda("activation"); }
void binary(void*, const void*, const void*, DType, const Broadcast&, BinaryOp, void*) { no_cuda("add / mul"); }
void max_abs_diff(float*, const void*, const void*, DType, std::int64_t, void*) { no_cuda("accumulate_max_abs_diff"); }
void softmax_rows(void*, const void*, DType, std::int64_t, std::int64_t, void*) { no_cuda("softmax"); }
void layer_norm_rows(void*, const void*, const void*, const void*, DType, std::int64_t, std::int64_t, float, void*) {
  no_cuda("layer_norm");
}
void attention(const AttentionArgs&, DType, void*) { no_cuda("scaled_dot_product_attention"); }
void embedding(void*, const std::int64_t*, std::int64_t, const void*, DType, std::int64_t, std::int64_t, const Device&,
               void*) {
  no_cuda("embedding");
}
void im2col(void*, const void*, DType, const Im2colArgs&, void*) { no_cuda("conv1d"); }

}  // namespace streampool::detail::cuda
