// Test-only CUDA kernels (support/work.h): a producer slow enough that a consumer on another
// stream that does not wait for it reads stale data.
#include <cuda_runtime.h>

namespace streampool::test {

namespace {
__device__ unsigned long long globaltimer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// One block: thread 0 spins on the GPU's nanosecond clock, then every thread writes.
__global__ void slow_fill_kernel(float* out, int n, float value, long long spin_ns) {
  if (threadIdx.x == 0) {
    const unsigned long long start = globaltimer_ns();
    while (static_cast<long long>(globaltimer_ns() - start) < spin_ns) {
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = value;
}
}  // namespace

cudaError_t launch_slow_fill(float* out, int n, float value, int spin_us, cudaStream_t stream) {
  slow_fill_kernel<<<1, 256, 0, stream>>>(out, n, value, static_cast<long long>(spin_us) * 1000);
  return cudaGetLastError();
}

}  // namespace streampool::test
