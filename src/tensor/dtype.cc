#include "streampool/dtype.h"

#include <cstring>

#include "streampool/error.h"

namespace streampool {

std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::float32:
    case DType::int32:
      return 4;
    case DType::float16:
    case DType::bfloat16:
      return 2;
    case DType::int64:
      return 8;
    case DType::uint8:
    case DType::boolean:
      return 1;
  }
  // An out-of-range value (a cast from an integer): every allocation asks for the size first,
  // so this is where a bad dtype is caught, as an out-of-range device kind is.
  throw InvalidArgument("unknown dtype " + std::to_string(static_cast<int>(d)) +
                        " (expected float32, float16, bfloat16, int64, int32, uint8 or bool)");
}

std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::float32:
      return "float32";
    case DType::float16:
      return "float16";
    case DType::bfloat16:
      return "bfloat16";
    case DType::int64:
      return "int64";
    case DType::int32:
      return "int32";
    case DType::uint8:
      return "uint8";
    case DType::boolean:
      return "bool";
  }
  return "?";
}

DType parse_dtype(std::string_view n) {
  if (n == "float32" || n == "fp32" || n == "float") return DType::float32;
  if (n == "float16" || n == "fp16" || n == "half") return DType::float16;
  if (n == "bfloat16" || n == "bf16") return DType::bfloat16;
  if (n == "int64") return DType::int64;
  if (n == "int32") return DType::int32;
  if (n == "uint8") return DType::uint8;
  if (n == "bool") return DType::boolean;
  throw InvalidArgument("unknown dtype '" + std::string(n) +
                        "' (expected float32, float16, bfloat16, int64, int32, uint8 or bool)");
}

bool is_floating(DType d) { return d == DType::float32 || d == DType::float16 || d == DType::bfloat16; }

std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (mag > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (mag >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (mag < 0x38800000u) {
    // Subnormal half (or zero): shift the 24-bit significand into place, rounding to even.
    if (mag < 0x33000000u) return static_cast<std::uint16_t>(sign);
    const int e = static_cast<int>(mag >> 23);
    std::uint32_t m = (mag & 0x7fffffu) | 0x800000u;
    const int shift = 126 - e;  // 14 + (112 - e) ... bits to drop
    std::uint32_t h = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = ((mag - 0x38000000u) >> 13);
  const std::uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  std::uint32_t x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      x = sign;
    } else {
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while (!(man & 0x400u));
      x = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else {
    x = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

std::uint16_t float_to_bfloat16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

float bfloat16_to_float(std::uint16_t b) {
  std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace streampool
