// softmax and layer_norm over the last dimension.

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor softmax(const Tensor& x) {
  const char* op = "softmax";
  check_floating(op, x, "input");
  if (x.dim() < 1) op_error(op, "input must have at least one dimension", {&x});
  const Device dev = x.device();
  const DType dt = x.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) return softmax(x.to(DType::float32)).to(dt);
  const Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), dt, dev);
  const std::int64_t n = x.size(-1);
  if (y.numel() == 0) return y;
  const std::int64_t rows = y.numel() / n;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* xp = xc.data<float>();
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] { cpu::softmax_rows(yp, xp, rows, n); });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::softmax_rows(y.data_ptr(), xc.data_ptr(), dt, rows, n, s.native_handle());
#endif
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  check_floating(op, x, "input");
  check_like(op, x, weight, "weight");
  check_like(op, x, bias, "bias");
  if (x.dim() < 1) op_error(op, "input must have at least one dimension", {&x});
  const std::int64_t n = x.size(-1);
  if (weight.dim() != 1 || weight.size(0) != n || bias.dim() != 1 || bias.size(0) != n) {
    op_error(op, "weight and bias must be (" + std::to_string(n) + ",)", {&x, &weight, &bias});
  }
  if (!(eps > 0)) op_error(op, "eps must be positive", {&x});
  const Device dev = x.device();
  const DType dt = x.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) {
    return layer_norm(x.to(DType::float32), weight.to(DType::float32), bias.to(DType::float32), eps).to(dt);
  }
  const Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  Tensor y = empty(x.shape(), dt, dev);
  if (y.numel() == 0) return y;
  const std::int64_t rows = y.numel() / n;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* xp = xc.data<float>();
    const float* wp = wc.data<float>();
    const float* bp = bc.data<float>();
    float* yp = y.data<float>();
    const float e = static_cast<float>(eps);
    s.enqueue_host(op, [=] { cpu::layer_norm_rows(yp, xp, wp, bp, rows, n, e); });
    return y;
  }
#ifdef STREAMPOOL_WITH_CUDA
  s.note_op(op);
  cuda::layer_norm_rows(y.data_ptr(), xc.data_ptr(), wc.data_ptr(), bc.data_ptr(), dt, rows, n,
                        static_cast<float>(eps), s.native_handle());
#endif
  return y;
}

}  // namespace streampool
