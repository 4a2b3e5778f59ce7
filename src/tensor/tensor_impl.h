#pragma once
// Tensor internals shared by the tensor layer and the ops. Internal.

#include <vector>

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

// Steps a multi-index over `shape` (last dimension fastest) and two element offsets that walk
// it with their own strides: the CPU kernels' loop over strided or broadcast operands.
inline void advance_two(int ndim, const std::int64_t* shape, std::int64_t* idx, const std::int64_t* a_strides,
                        std::int64_t& a, const std::int64_t* b_strides, std::int64_t& b) {
  for (int k = ndim - 1; k >= 0; --k) {
    ++idx[k];
    a += a_strides[k];
    b += b_strides[k];
    if (idx[k] < shape[k]) return;
    a -= a_strides[k] * shape[k];
    b -= b_strides[k] * shape[k];
    idx[k] = 0;
  }
}

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

// One run of a gather: `bytes` from `src` to the destination + `offset` bytes.
struct GatherPiece {
  const void* src = nullptr;
  std::int64_t offset = 0;
  std::int64_t bytes = 0;
};
// Up to kGatherPieces runs into one destination: one CUDA launch (the table travels in the
// kernel's parameters), or one host task.
inline constexpr int kGatherPieces = 128;
struct GatherArgs {
  void* dst = nullptr;
  int n = 0;
  GatherPiece piece[kGatherPieces];
};
// Copies every piece into `dst` (memory of `device`) on the calling thread's current stream of
// it. Pieces must not overlap; sources must stay alive until the stream has run the copy.
void gather_bytes(const Device& device, void* dst, const std::vector<GatherPiece>& pieces);

void cpu_copy_strided(const StridedCopy& c);
void cpu_gather(const GatherArgs& g);
void cpu_fill(void* dst, DType dtype, std::int64_t n, double value);
// tensor/cuda/copy_kernels.cu (tensor/no_cuda/ in a build without CUDA).
void cuda_copy_strided(const StridedCopy& c, void* stream);
void cuda_fill(void* dst, DType dtype, std::int64_t n, double value, void* stream);
void cuda_gather(const GatherArgs& g, void* stream);

}  // namespace streampool::detail
