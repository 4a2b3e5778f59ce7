#pragma once
// DType: element types of tensors.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

enum class DType : std::uint8_t { float32, float16, bfloat16, int64, int32, uint8, boolean };

std::size_t dtype_size(DType dtype);  // throws InvalidArgument for a value outside the enum
std::string_view dtype_name(DType dtype);  // "float32", "float16", "bfloat16", "int64", "int32", "uint8", "bool"
// Parses the names above (and "fp32", "fp16", "bf16", "half"); throws InvalidArgument.
DType parse_dtype(std::string_view name);
bool is_floating(DType dtype);

// IEEE half and bfloat16 conversions on the host (round to nearest even).
std::uint16_t float_to_half(float f);
float half_to_float(std::uint16_t h);
std::uint16_t float_to_bfloat16(float f);
float bfloat16_to_float(std::uint16_t b);

// The C++ type of a dtype's storage, for typed access (half types are raw 16-bit words).
template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::float32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::int64; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::int32; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::uint8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }

}  // namespace streampool
STREAMPOOL_API_END
