// The tensor layer's CUDA kernels in a build without CUDA (Note [Backend registry]).

#include "streampool/error.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {

void cuda_copy_strided(const StridedCopy&, void*) {
  throw DeviceError("copy: streampool was built without the CUDA backend");
}
void cuda_fill(void*, DType, std::int64_t, double, void*) {
  throw DeviceError("fill: streampool was built without the CUDA backend");
}
void cuda_gather(const GatherArgs&, void*) {
  throw DeviceError("gather: streampool was built without the CUDA backend");
}

}  // namespace streampool::detail
