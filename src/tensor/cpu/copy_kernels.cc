// CPU kernels of the tensor layer: strided copy with dtype conversion, and fill.

#include <cstring>

#include "streampool/dtype.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {
namespace {

double load(const void* base, DType d, std::int64_t i) {
  switch (d) {
    case DType::float32:
      return static_cast<const float*>(base)[i];
    case DType::float16:
      return half_to_float(static_cast<const std::uint16_t*>(base)[i]);
    case DType::bfloat16:
      return bfloat16_to_float(static_cast<const std::uint16_t*>(base)[i]);
    case DType::int64:
      return static_cast<double>(static_cast<const std::int64_t*>(base)[i]);
    case DType::int32:
      return static_cast<const std::int32_t*>(base)[i];
    case DType::uint8:
      return static_cast<const std::uint8_t*>(base)[i];
    case DType::boolean:
      return static_cast<const std::uint8_t*>(base)[i] != 0;
  }
  return 0;
}

void store(void* base, DType d, std::int64_t i, double v) {
  switch (d) {
    case DType::float32:
      static_cast<float*>(base)[i] = static_cast<float>(v);
      break;
    case DType::float16:
      static_cast<std::uint16_t*>(base)[i] = float_to_half(static_cast<float>(v));
      break;
    case DType::bfloat16:
      static_cast<std::uint16_t*>(base)[i] = float_to_bfloat16(static_cast<float>(v));
      break;
    case DType::int64:
      static_cast<std::int64_t*>(base)[i] = static_cast<std::int64_t>(v);
      break;
    case DType::int32:
      static_cast<std::int32_t*>(base)[i] = static_cast<std::int32_t>(v);
      break;
    case DType::uint8:
      static_cast<std::uint8_t*>(base)[i] = static_cast<std::uint8_t>(v);
      break;
    case DType::boolean:
      static_cast<std::uint8_t*>(base)[i] = v != 0;
      break;
  }
}

bool is_integral(DType d) { return !is_floating(d); }

}  // namespace

void cpu_copy_strided(const StridedCopy& c) {
  if (c.numel == 0) return;
  // Integers go through int64 so that large values survive; floats through double.
  const bool ints = is_integral(c.src_dtype) && is_integral(c.dst_dtype) && c.dst_dtype != DType::boolean;
  const std::size_t esize = dtype_size(c.src_dtype);
  std::int64_t idx[kMaxDims] = {};
  std::int64_t s = 0, d = 0;
  for (std::int64_t n = 0; n < c.numel; ++n) {
    if (c.src_dtype == c.dst_dtype) {
      std::memcpy(static_cast<char*>(c.dst) + d * esize, static_cast<const char*>(c.src) + s * esize, esize);
    } else if (ints) {
      std::int64_t v = 0;
      switch (c.src_dtype) {
        case DType::int64: v = static_cast<const std::int64_t*>(c.src)[s]; break;
        case DType::int32: v = static_cast<const std::int32_t*>(c.src)[s]; break;
        default: v = static_cast<const std::uint8_t*>(c.src)[s]; break;
      }
      switch (c.dst_dtype) {
        case DType::int64: static_cast<std::int64_t*>(c.dst)[d] = v; break;
        case DType::int32: static_cast<std::int32_t*>(c.dst)[d] = static_cast<std::int32_t>(v); break;
        default: static_cast<std::uint8_t*>(c.dst)[d] = static_cast<std::uint8_t>(v); break;
      }
    } else {
      store(c.dst, c.dst_dtype, d, load(c.src, c.src_dtype, s));
    }
    advance_two(c.ndim, c.shape, idx, c.src_strides, s, c.dst_strides, d);
  }
}

void cpu_fill(void* dst, DType dtype, std::int64_t n, double value) {
  if (dtype == DType::float32) {
    float v = static_cast<float>(value);
    auto* p = static_cast<float*>(dst);
    for (std::int64_t i = 0; i < n; ++i) p[i] = v;
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) store(dst, dtype, i, value);
}

void cpu_gather(const GatherArgs& g) {
  for (int i = 0; i < g.n; ++i) {
    std::memcpy(static_cast<char*>(g.dst) + g.piece[i].offset, g.piece[i].src, static_cast<std::size_t>(g.piece[i].bytes));
  }
}

}  // namespace streampool::detail
