// CUDA kernels of the tensor layer: strided copy with dtype conversion, and fill.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "streampool/error.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {
namespace {

__device__ double load(const void* base, DType d, long long i) {
  switch (d) {
    case DType::float32: return static_cast<const float*>(base)[i];
    case DType::float16: return __half2float(static_cast<const __half*>(base)[i]);
    case DType::bfloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case DType::int64: return static_cast<double>(static_cast<const long long*>(base)[i]);
    case DType::int32: return static_cast<const int*>(base)[i];
    case DType::uint8: return static_cast<const unsigned char*>(base)[i];
    case DType::boolean: return static_cast<const unsigned char*>(base)[i] != 0;
  }
  return 0;
}

__device__ long long load_int(const void* base, DType d, long long i) {
  switch (d) {
    case DType::int64: return static_cast<const long long*>(base)[i];
    case DType::int32: return static_cast<const int*>(base)[i];
    default: return static_cast<const unsigned char*>(base)[i];
  }
}

__device__ void store(void* base, DType d, long long i, double v) {
  switch (d) {
    case DType::float32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::float16: static_cast<__half*>(base)[i] = __float2half_rn(static_cast<float>(v)); break;
    case DType::bfloat16: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(static_cast<float>(v)); break;
    case DType::int64: static_cast<long long*>(base)[i] = static_cast<long long>(v); break;
    case DType::int32: static_cast<int*>(base)[i] = static_cast<int>(v); break;
    case DType::uint8: static_cast<unsigned char*>(base)[i] = static_cast<unsigned char>(v); break;
    case DType::boolean: static_cast<unsigned char*>(base)[i] = v != 0; break;
  }
}

__device__ void store_int(void* base, DType d, long long i, long long v) {
  switch (d) {
    case DType::int64: static_cast<long long*>(base)[i] = v; break;
    case DType::int32: static_cast<int*>(base)[i] = static_cast<int>(v); break;
    default: static_cast<unsigned char*>(base)[i] = static_cast<unsigned char>(v); break;
  }
}

__device__ int dtype_size_device(DType d) {
  switch (d) {
    case DType::int64: return 8;
    case DType::float32: case DType::int32: return 4;
    case DType::float16: case DType::bfloat16: return 2;
    default: return 1;
  }
}

__device__ __host__ bool integral(DType d) { return d == DType::int64 || d == DType::int32 || d == DType::uint8; }

__global__ void copy_strided_kernel(StridedCopy c) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long n = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; n < c.numel; n += stride) {
    long long rem = n, s = 0, d = 0;
    for (int k = c.ndim - 1; k >= 0; --k) {
      const long long i = rem % c.shape[k];
      rem /= c.shape[k];
      s += i * c.src_strides[k];
      d += i * c.dst_strides[k];
    }
    if (c.src_dtype == c.dst_dtype) {
      switch (dtype_size_device(c.src_dtype)) {
        case 8: static_cast<long long*>(c.dst)[d] = static_cast<const long long*>(c.src)[s]; break;
        case 4: static_cast<int*>(c.dst)[d] = static_cast<const int*>(c.src)[s]; break;
        case 2: static_cast<short*>(c.dst)[d] = static_cast<const short*>(c.src)[s]; break;
        default: static_cast<char*>(c.dst)[d] = static_cast<const char*>(c.src)[s]; break;
      }
    } else if (integral(c.src_dtype) && integral(c.dst_dtype)) {
      store_int(c.dst, c.dst_dtype, d, load_int(c.src, c.src_dtype, s));
    } else {
      store(c.dst, c.dst_dtype, d, load(c.src, c.src_dtype, s));
    }
  }
}

__global__ void fill_kernel(void* dst, DType d, long long n, double v) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += stride) store(dst, d, i, v);
}

// One block per piece; 16-byte vectors where source, destination and length allow.
__global__ void gather_kernel(GatherArgs g) {
  const GatherPiece p = g.piece[blockIdx.x];
  char* dst = static_cast<char*>(g.dst) + p.offset;
  const char* src = static_cast<const char*>(p.src);
  if (((reinterpret_cast<unsigned long long>(dst) | reinterpret_cast<unsigned long long>(src) | p.bytes) & 15) == 0) {
    const long long n = p.bytes / 16;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  } else {
    for (long long i = threadIdx.x; i < p.bytes; i += blockDim.x) dst[i] = src[i];
  }
}

unsigned blocks_for(long long n) {
  long long b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

void check_launch(const char* what) {
  cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess) {
    throw CudaError(std::string(what) + " kernel launch failed: " + cudaGetErrorString(st), static_cast<int>(st));
  }
}

}  // namespace

void cuda_copy_strided(const StridedCopy& c, void* stream) {
  if (c.numel == 0) return;
  copy_strided_kernel<<<blocks_for(c.numel), 256, 0, static_cast<cudaStream_t>(stream)>>>(c);
  check_launch("copy_strided");
}

void cuda_fill(void* dst, DType dtype, std::int64_t n, double value, void* stream) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(dst, dtype, n, value);
  check_launch("fill");
}

void cuda_gather(const GatherArgs& g, void* stream) {
  if (g.n == 0) return;
  gather_kernel<<<g.n, 256, 0, static_cast<cudaStream_t>(stream)>>>(g);
  check_launch("gather");
}

}  // namespace streampool::detail
