#pragma once
// Every CUDA status is checked; a failure becomes CudaError naming the call and the device.

#include <cuda_runtime.h>

#include <string>

#include "streampool/error.h"

namespace streampool::detail {

[[noreturn]] inline void throw_cuda(const char* call, cudaError_t status, const std::string& where) {
  throw CudaError(std::string(call) + " failed on " + where + ": " + cudaGetErrorString(status) + " (" +
                      cudaGetErrorName(status) + ", " + std::to_string(static_cast<int>(status)) + ")",
                  static_cast<int>(status));
}

#define STREAMPOOL_CUDA_CHECK(expr, where)                                   \
  do {                                                                       \
    cudaError_t sp_status_ = (expr);                                         \
    if (sp_status_ != cudaSuccess) ::streampool::detail::throw_cuda(#expr, sp_status_, (where)); \
  } while (0)

// Makes `device` current for a scope; restores the caller's device after.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device) : target_(device) {
    STREAMPOOL_CUDA_CHECK(cudaGetDevice(&previous_), "cuda:" + std::to_string(device));
    if (previous_ != target_) STREAMPOOL_CUDA_CHECK(cudaSetDevice(target_), "cuda:" + std::to_string(device));
  }
  ~CudaDeviceGuard() {
    if (previous_ != target_) (void)cudaSetDevice(previous_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int target_;
  int previous_ = 0;
};

}  // namespace streampool::detail
