// conv1d: im2col, then one batched GEMM with the weight shared by the batch that also adds the
// bias per output channel and applies the activation.

#include "ops/cpu/blas.h"
#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding, Activation act) {
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
  if (cpu_widens(x)) return conv1d(widened(x), widened(weight), widened(bias), stride, padding, act).to(dt);
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const std::int64_t rows = Cin * K;
  const bool direct = K == 1 && stride == 1 && padding == 0;  // the input already is the column matrix
  Tensor cols = direct ? xc : empty({B, rows, Lout}, dt, dev);
  Tensor y = empty({B, Cout, Lout}, dt, dev);
  if (y.numel() == 0) return y;
  Im2colArgs ic;
  ic.batch = static_cast<int>(B);
  ic.cin = static_cast<int>(Cin);
  ic.len = static_cast<int>(L);
  ic.kernel = static_cast<int>(K);
  ic.stride = stride;
  ic.padding = padding;
  ic.lout = static_cast<int>(Lout);
  // The weight (Cout, Cin * K) is shared by the batch; each sample's columns are its B.
  GemmArgs g;
  g.batch = ic.batch;
  g.m = static_cast<int>(Cout);
  g.n = ic.lout;
  g.k = static_cast<int>(rows);
  g.a = wc.data_ptr();
  g.lda = g.k;
  g.b = cols.data_ptr();
  g.ldb = g.n;
  g.stride_b = rows * Lout;
  g.c = y.data_ptr();
  g.ldc = g.n;
  g.stride_c = Cout * Lout;
  // The GEMM adds the bias per output channel and applies the activation: the CPU's in the same
  // pass, CUDA's in one pass after it (GemmArgs::row_bias).
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  g.row_bias = bc.defined() ? bc.data_ptr() : nullptr;
  g.act = act;
  const void* xp = xc.data_ptr();
  void* colp = cols.data_ptr();
  if (x.device().kind == DeviceKind::cpu) cpu::prepare_gemm();  // Note [oneDNN at exit]
  launch(
      op, dev,
      [=] {
        if (!direct) cpu::im2col(static_cast<float*>(colp), static_cast<const float*>(xp), ic);
        cpu::gemm(g);
      },
      [&](void* stream) {
        if (!direct) cuda::im2col(colp, xp, dt, ic, stream);
        cuda::gemm(dev, dt, g, stream);
      });
  return y;
}

}  // namespace streampool
