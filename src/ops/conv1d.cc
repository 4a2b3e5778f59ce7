// conv1d: im2col, then one batched GEMM with the weight shared by the batch, then the bias.

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding) {
  const char* op = "conv1d";
  check_floating(op, x, "input");
  check_like(op, x, weight, "weight");
  check_dim(op, x, "input", 3);
  check_dim(op, weight, "weight", 3);
  const std::int64_t B = x.size(0), Cin = x.size(1), L = x.size(2), Cout = weight.size(0), K = weight.size(2);
  if (weight.size(1) != Cin) op_error(op, "input channels do not match the weight", {&x, &weight});
  if (stride < 1 || padding < 0) op_error(op, "stride must be >= 1 and padding >= 0", {&x});
  if (bias.defined()) {
    check_like(op, x, bias, "bias");
    if (bias.dim() != 1 || bias.size(0) != Cout) op_error(op, "bias must be (out_channels,)", {&weight, &bias});
  }
  const std::int64_t Lout = (L + 2 * padding - K) / stride + 1;
  if (L + 2 * padding < K) op_error(op, "input is shorter than the kernel", {&x, &weight});
  const Device dev = x.device();
  const DType dt = x.dtype();
  if (dev.kind == DeviceKind::cpu && dt != DType::float32) {
    return conv1d(x.to(DType::float32), weight.to(DType::float32), bias.defined() ? bias.to(DType::float32) : bias,
                  stride, padding)
        .to(dt);
  }
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const std::int64_t rows = Cin * K;
  const bool direct = K == 1 && stride == 1 && padding == 0;  // the input already is the column matrix
  Tensor cols = direct ? xc : empty({B, rows, Lout}, dt, dev);
  Tensor y = empty({B, Cout, Lout}, dt, dev);
  if (y.numel() == 0) return y;
  StreamImpl& s = current_impl(dev);
  if (dev.kind == DeviceKind::cpu) {
    const float* xp = xc.data<float>();
    const float* wp = wc.data<float>();
    float* cp = cols.data<float>();
    float* yp = y.data<float>();
    s.enqueue_host(op, [=] {
      if (!direct) cpu::im2col(cp, xp, static_cast<int>(B), static_cast<int>(Cin), static_cast<int>(L), static_cast<int>(K),
                               stride, padding, static_cast<int>(Lout));
      for (std::int64_t b = 0; b < B; ++b) {
        cpu::gemm(static_cast<int>(Cout), static_cast<int>(Lout), static_cast<int>(rows), wp, static_cast<int>(rows),
                  cp + b * rows * Lout, static_cast<int>(Lout), false, yp + b * Cout * Lout, static_cast<int>(Lout));
      }
    });
  } else {
#ifdef STREAMPOOL_WITH_CUDA
    s.note_op(op);
    if (!direct) {
      cuda::im2col(cols.data_ptr(), xc.data_ptr(), dt, static_cast<int>(B), static_cast<int>(Cin), static_cast<int>(L),
                   static_cast<int>(K), stride, padding, static_cast<int>(Lout), s.native_handle());
    }
    cuda::gemm(dev, dt, static_cast<int>(B), static_cast<int>(Cout), static_cast<int>(Lout), static_cast<int>(rows),
               wc.data_ptr(), static_cast<int>(rows), 0, cols.data_ptr(), static_cast<int>(Lout), rows * Lout, false,
               y.data_ptr(), static_cast<int>(Lout), Cout * Lout, nullptr, Activation::none, s.native_handle());
#endif
  }
  // reshape, not view: a strided bias (a slice) is accepted, as linear and layer_norm accept it.
  if (bias.defined()) return add(y, bias.reshape({Cout, 1}));
  return y;
}

}  // namespace streampool
