#pragma once
// What the ops share: argument checks, the CPU's float32 widening, and the launch seam with
// both backends' kernel entry points. Internal.

#include <string>

#include "backend/launch.h"
#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "streampool/error.h"
#include "streampool/ops.h"
#include "tensor/tensor_impl.h"

namespace streampool::detail {

// "linear: <why> (input Tensor(float32, (2, 3), cuda:0), weight ...)"
[[noreturn]] void op_error(const char* op, const std::string& why, std::initializer_list<const Tensor*> tensors);

// A defined floating tensor.
void check_floating(const char* op, const Tensor& t, const char* name);
// Same device and dtype as `ref`.
void check_like(const char* op, const Tensor& ref, const Tensor& t, const char* name);
void check_dim(const char* op, const Tensor& t, const char* name, std::int64_t dims);

// The CPU kernels compute in float32: an op given 16-bit floats on the CPU runs on widened
// copies and narrows its result, as PyTorch's CPU ops accumulate 16-bit inputs in float32.
inline bool cpu_widens(const Tensor& x) { return x.device().kind == DeviceKind::cpu && x.dtype() != DType::float32; }
inline Tensor widened(const Tensor& t) { return t.defined() ? t.to(DType::float32) : t; }

template <typename T = void>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

}  // namespace streampool::detail
