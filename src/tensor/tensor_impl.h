#pragma once
// Tensor internals shared by the tensor layer and the ops. Internal.

#include "streampool/allocator.h"
#include "streampool/tensor.h"

namespace streampool::detail {

inline constexpr int kMaxDims = 8;

struct Storage {
  DataPtr data;
};

// Immutable once built: a Tensor handle never changes what it views.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  std::int64_t offset = 0;
  DType dtype = DType::float32;
  Device device;
};

Shape contiguous_strides(const Shape& shape);

// One elementwise copy with conversion: dst[i] = convert(src[i]) over `shape`.
struct StridedCopy {
  int ndim = 0;
  std::int64_t numel = 0;
  std::int64_t shape[kMaxDims] = {};
  std::int64_t src_strides[kMaxDims] = {};
  std::int64_t dst_strides[kMaxDims] = {};
  DType src_dtype = DType::float32;
  DType dst_dtype = DType::float32;
  const void* src = nullptr;  // element 0
  void* dst = nullptr;        // element 0
};

void cpu_copy_strided(const StridedCopy& c);
void cpu_fill(void* dst, DType dtype, std::int64_t n, double value);
#ifdef STREAMPOOL_WITH_CUDA
void cuda_copy_strided(const StridedCopy& c, void* stream);
void cuda_fill(void* dst, DType dtype, std::int64_t n, double value, void* stream);
#endif

}  // namespace streampool::detail
