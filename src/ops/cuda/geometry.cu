// Launch geometry from the device's properties (read once per device).

#include <cuda_runtime.h>

#include "core/per_device.h"
#include "ops/cuda/common.cuh"

namespace streampool::detail::cuda {

int sm_count() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 1;
  static auto* counts = new PerDevice<int>;  // Note [Process lifetime]
  return counts->get(Device(DeviceKind::cuda, device), [&] {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n < 1) n = 1;
    return new int(n);
  });
}

}  // namespace streampool::detail::cuda
