// linear and matmul: argument checks, then a GEMM on the current stream.

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act) {
  const char* op = "linear";
  check_floating(op, x, "input");
  check_like(op, x, weight, "weight");
  check_dim(op, weight, "weight", 2);
  if (x.dim() < 1) op_error(op, "input must have at least one dimension", {&x});
  if (x.size(-1) != weight.size(1)) {
    op_error(op, "input features " + std::to_string(x.size(-1)) + " do not match weight in_features " +
                     std::to_string(weight.size(1)),
             {&x, &weight});
  }
  if (bias.defined()) {
    check_like(op, x, bias, "bias");
    if (bias.dim() != 1 || bias.size(0) != weight.size(0)) op_error(op, "bias must be (out_features,)", {&weight, &bias});
  }
  const Device dev = x.device();
  const DType dt = x.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) {
    return linear(x.to(DType::float32), weight.to(DType::float32), bias.defined() ? bias.to(DType::float32) : bias, act)
        .to(dt);
  }
  const std::int64_t k = weight.size(1), n = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = n;
  if (k == 0) {
    // No input features: the product is zeros and the result is act(bias) broadcast, as in
    // PyTorch (a GEMM of depth 0 would leave the output unwritten).
    Tensor y = zeros(out_shape, dt, dev);
    if (bias.defined()) y = add(y, bias);
    return act == Activation::none ? y : activation(y, act);
  }
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : bias;
  const std::int64_t m = x.numel() / k;
  Tensor y = empty(out_shape, dt, dev);
  if (y.numel() == 0) return y;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* xp = xc.data<float>();
    const float* wp = wc.data<float>();
    const float* bp = bc.defined() ? bc.data<float>() : nullptr;
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] {
      cpu::gemm(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), xp, static_cast<int>(k), wp,
                static_cast<int>(k), true, yp, static_cast<int>(n));
      cpu::bias_activation(yp, m, n, bp, act);
    });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::gemm(dev, dt, 1, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), xc.data_ptr(),
             static_cast<int>(k), 0, wc.data_ptr(), static_cast<int>(k), 0, true, y.data_ptr(), static_cast<int>(n), 0,
             bc.defined() ? bc.data_ptr() : nullptr, act, s.native_handle());
#endif
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  const char* op = "matmul";
  check_floating(op, a, "a");
  check_like(op, a, b, "b");
  if (a.dim() < 2 || b.dim() < 2) op_error(op, "both operands need at least 2 dimensions", {&a, &b});
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  if (b.size(-2) != k) op_error(op, "inner dimensions differ", {&a, &b});
  Shape batch_shape(a.shape().begin(), a.shape().end() - 2);
  const bool shared_b = b.dim() == 2;
  if (!shared_b && Shape(b.shape().begin(), b.shape().end() - 2) != batch_shape) {
    op_error(op, "batch dimensions differ (b may also be 2-D)", {&a, &b});
  }
  const Device dev = a.device();
  const DType dt = a.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) return matmul(a.to(DType::float32), b.to(DType::float32)).to(dt);
  const std::int64_t batch = shape_numel(batch_shape);
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor y = empty(out_shape, dt, dev);
  if (y.numel() == 0) return y;
  const std::int64_t sa = m * k, sb = shared_b ? 0 : k * n, sc = m * n;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* ap = ac.data<float>();
    const float* bp = bc.data<float>();
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] {
      for (std::int64_t i = 0; i < batch; ++i) {
        cpu::gemm(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), ap + i * sa, static_cast<int>(k),
                  bp + i * sb, static_cast<int>(n), false, yp + i * sc, static_cast<int>(n));
      }
    });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::gemm(dev, dt, static_cast<int>(batch), static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
             ac.data_ptr(), static_cast<int>(k), sa, bc.data_ptr(), static_cast<int>(n), sb, false, y.data_ptr(),
             static_cast<int>(n), sc, nullptr, Activation::none, s.native_handle());
#endif
  return y;
}

}  // namespace streampool
