// add, mul (with broadcasting) and the activations.

#include <algorithm>
#include <cmath>

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
  const Device dev = a.device();
  const DType dt = a.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) {
    return binary_op(op, a.to(DType::float32), b.to(DType::float32), kind).to(dt);
  }
  Tensor y = empty(out, dt, dev);
  if (bc.numel == 0) return y;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] { cpu::binary(yp, ap, bp, bc, kind); });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::binary(y.data_ptr(), a.data_ptr(), b.data_ptr(), dt, bc, kind, s.native_handle());
#endif
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_op("add", a, b, BinaryOp::add); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op("mul", a, b, BinaryOp::mul); }

Tensor activation(const Tensor& x, Activation act) {
  const char* op = "activation";
  check_floating(op, x, "input");
  const Device dev = x.device();
  const DType dt = x.dtype();
  if (act == Activation::none) return x;
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) return activation(x.to(DType::float32), act).to(dt);
  const Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), dt, dev);
  const std::int64_t n = y.numel();
  if (n == 0) return y;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* xp = xc.data<float>();
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] { cpu::unary(yp, xp, n, act); });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::unary(y.data_ptr(), xc.data_ptr(), dt, n, act, s.native_handle());
#endif
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
  const Device dev = a.device();
  if (dev.kind == DeviceKind::cpu && a.dtype() != DType::float32) {
    accumulate_max_abs_diff(acc, a.to(DType::float32), b.to(DType::float32));
    return;
  }
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const std::int64_t n = a.numel();
  float* out = acc.data<float>();
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* ap = ac.data<float>();
    const float* bp = bc.data<float>();
    s.enqueue_host(op, [=] {
      float m = *out;
      for (std::int64_t i = 0; i < n; ++i) {
        const float d = std::abs(ap[i] - bp[i]);
        m = std::isnan(d) ? INFINITY : std::max(m, d);
      }
      *out = m;
    });
    return;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::max_abs_diff(out, ac.data_ptr(), bc.data_ptr(), a.dtype(), n, s.native_handle());
#endif
}

}  // namespace streampool
