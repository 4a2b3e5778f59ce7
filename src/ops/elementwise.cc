// add, mul (with broadcasting), the activations, and the on-device result check.

#include <algorithm>

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

namespace {

Tensor binary_op(const char* op, const Tensor& a, const Tensor& b, BinaryOp kind) {
  check_floating(op, a, "a");
  check_like(op, a, b, "b");
  const std::int64_t nd = std::max(a.dim(), b.dim());
  if (nd > kMaxDims) op_error(op, "more than 8 dimensions", {&a, &b});
  Broadcast bc;
  bc.ndim = static_cast<int>(nd);
  Shape out(nd);
  for (std::int64_t i = 0; i < nd; ++i) {
    const std::int64_t ia = i - (nd - a.dim()), ib = i - (nd - b.dim());
    const std::int64_t sa = ia >= 0 ? a.size(ia) : 1, sb = ib >= 0 ? b.size(ib) : 1;
    if (sa != sb && sa != 1 && sb != 1) op_error(op, "shapes cannot be broadcast together", {&a, &b});
    out[i] = std::max(sa, sb);
    if (sa == 0 || sb == 0) out[i] = 0;
    bc.shape[i] = out[i];
    bc.a_strides[i] = (ia >= 0 && sa != 1) ? a.strides()[ia] : 0;
    bc.b_strides[i] = (ib >= 0 && sb != 1) ? b.strides()[ib] : 0;
  }
  bc.numel = shape_numel(out);
  if (cpu_widens(a)) return binary_op(op, widened(a), widened(b), kind).to(a.dtype());
  const DType dt = a.dtype();
  Tensor y = empty(out, dt, a.device());
  if (bc.numel == 0) return y;
  void* yp = y.data_ptr();
  const void* ap = a.data_ptr();
  const void* bp = b.data_ptr();
  launch(
      op, a.device(),
      [=] { cpu::binary(static_cast<float*>(yp), static_cast<const float*>(ap), static_cast<const float*>(bp), bc, kind); },
      [&](void* stream) { cuda::binary(yp, ap, bp, dt, bc, kind, stream); });
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_op("add", a, b, BinaryOp::add); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op("mul", a, b, BinaryOp::mul); }

Tensor activation(const Tensor& x, Activation act) {
  const char* op = "activation";
  check_floating(op, x, "input");
  if (act == Activation::none) return x;
  if (cpu_widens(x)) return activation(widened(x), act).to(x.dtype());
  const DType dt = x.dtype();
  const Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), dt, x.device());
  const std::int64_t n = y.numel();
  if (n == 0) return y;
  float* yp = ptr<float>(y);
  const float* xp = ptr<const float>(xc);
  launch(
      op, x.device(), [=] { cpu::unary(yp, xp, n, act); },
      [&](void* stream) { cuda::unary(yp, xp, dt, n, act, stream); });
  return y;
}

void accumulate_max_abs_diff(const Tensor& acc, const Tensor& a, const Tensor& b) {
  const char* op = "accumulate_max_abs_diff";
  check_floating(op, a, "a");
  check_like(op, a, b, "b");
  if (!acc.defined() || acc.dtype() != DType::float32 || acc.numel() != 1 || acc.device() != a.device()) {
    op_error(op, "acc must be one float32 element on the inputs' device", {&acc, &a});
  }
  if (a.shape() != b.shape()) op_error(op, "a and b differ in shape", {&a, &b});
  if (cpu_widens(a)) return accumulate_max_abs_diff(acc, widened(a), widened(b));
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const std::int64_t n = a.numel();
  const DType dt = a.dtype();
  float* out = acc.data<float>();
  const void* ap = ac.data_ptr();
  const void* bp = bc.data_ptr();
  launch(
      op, a.device(), [=] { cpu::max_abs_diff(out, static_cast<const float*>(ap), static_cast<const float*>(bp), n); },
      [&](void* stream) { cuda::max_abs_diff(out, ap, bp, dt, n, stream); });
}

}  // namespace streampool
