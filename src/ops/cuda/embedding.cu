// CUDA embedding: one block per id; an out-of-range id raises a flag that a host task of the
// stream turns into the stream's asynchronous error.

#include "core/runtime.h"
#include "memory/pinned_staging.h"
#include "ops/cuda/common.cuh"
#include "streampool/tensor.h"

namespace streampool::detail::cuda {
namespace {

template <typename T>
__global__ void embedding_kernel(T* __restrict__ out, const std::int64_t* __restrict__ ids, const T* __restrict__ w,
                                 std::int64_t num, std::int64_t dim, int* bad) {
  const std::int64_t id = ids[blockIdx.x];
  T* dst = out + blockIdx.x * dim;
  const bool ok = id >= 0 && id < num;
  if (!ok && threadIdx.x == 0) atomicExch(bad, 1);
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = ok ? w[id * dim + i] : from_f<T>(0.f);
}

}  // namespace

void embedding(void* out, const std::int64_t* ids, std::int64_t count, const void* weight, DType dt, std::int64_t num,
               std::int64_t dim, const Device& dev, void* stream) {
  // Out-of-range ids: the kernel writes zeros and raises a flag, copied to pinned memory and
  // checked by a host task, which turns it into the stream's asynchronous error.
  Tensor flag = zeros({1}, DType::int32, dev);
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<static_cast<unsigned>(count), 128, 0, cs(stream)>>>(
        static_cast<T*>(out), ids, static_cast<const T*>(weight), num, dim, flag.data<std::int32_t>());
  });
  check("embedding", dt, [&] { return std::to_string(count) + " ids of weight " + dims({num, dim}); });
  int* slot = acquire_pinned_word(device_pool(dev).backend);
  cudaError_t st = cudaMemcpyAsync(slot, flag.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost, cs(stream));
  if (st != cudaSuccess) {
    release_pinned_word(slot);
    throw CudaError(std::string("embedding: cudaMemcpyAsync: ") + cudaGetErrorString(st), static_cast<int>(st));
  }
  current_impl(dev).enqueue_host("embedding", [slot, num] {
    const int bad = *slot;
    release_pinned_word(slot);
    if (bad) throw InvalidArgument("embedding: an id is outside [0, " + std::to_string(num) + ")");
  });
}

}  // namespace streampool::detail::cuda
