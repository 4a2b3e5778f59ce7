// The kernel of the CUDA backend's self-test.
#include "backend/cuda/exit_gate.h"
#include <cuda_runtime.h>

#include "streampool/export.h"

namespace streampool::detail {

namespace {
__global__ void affine_iota(float* out, int n, float scale, float shift) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  // Two roundings, no fused multiply-add: bit-identical to the host's `i * scale + shift`.
  if (i < n) out[i] = __fadd_rn(__fmul_rn(static_cast<float>(i), scale), shift);
}
}  // namespace

// A test hook as well: tests/support/work.cc launches it as its CUDA work.
STREAMPOOL_TEST_HOOK cudaError_t launch_self_test_kernel(float* out, int n, float scale, float shift, cudaStream_t stream) {
    STREAMPOOL_CUDA_SCOPE;
  affine_iota<<<(n + 255) / 256, 256, 0, stream>>>(out, n, scale, shift);
  return cudaGetLastError();
}

}  // namespace streampool::detail
