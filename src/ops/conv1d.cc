// conv1d: im2col, then one batched GEMM with the weight shared by the batch that also adds the
// bias per output channel and applies the activation.

#include "ops/folded_conv1d.h"

#include <algorithm>
#include <vector>

#include "ops/cpu/blas.h"
#include "ops/op_common.h"

namespace streampool {

using namespace detail;

namespace {

// im2col into a column matrix of `rows` rows per sample (at least Cin * K: Im2colArgs::rows), then
// one GEMM of the (Cout, rows) weight `wc` shared by the batch, adding `bc` per output channel
// (if defined) and applying `act`.
Tensor conv_gemm(const char* op, const Tensor& xc, const Tensor& wc, std::int64_t rows, std::int64_t K,
                 const Tensor& bc, int stride, int padding, Activation act) {
  const std::int64_t B = xc.size(0), Cin = xc.size(1), L = xc.size(2), Cout = wc.size(0);
  const std::int64_t Lout = (L + 2 * padding - K) / stride + 1;
  const Device dev = xc.device();
  const DType dt = xc.dtype();
  const bool direct = rows == Cin * K && K == 1 && stride == 1 && padding == 0;  // the input is the column matrix
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
  ic.rows = static_cast<int>(rows);
  // The weight (Cout, rows) is shared by the batch; each sample's columns are its B.
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
  g.row_bias = bc.defined() ? bc.data_ptr() : nullptr;
  g.act = act;
  const void* xp = xc.data_ptr();
  void* colp = cols.data_ptr();
  if (dev.kind == DeviceKind::cpu) cpu::prepare_gemm();  // Note [oneDNN at exit]
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

void check_geometry(const char* op, const Tensor& x, std::int64_t K, int stride, int padding) {
  if (stride < 1 || padding < 0) op_error(op, "stride must be >= 1 and padding >= 0", {&x});
  if (x.size(2) + 2 * padding < K) op_error(op, "input is shorter than the kernel", {&x});
}

}  // namespace

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding, Activation act) {
  const char* op = "conv1d";
  check_floating(op, x, "input");
  check_like(op, x, weight, "weight");
  check_dim(op, x, "input", 3);
  check_dim(op, weight, "weight", 3);
  const std::int64_t Cin = x.size(1), Cout = weight.size(0), K = weight.size(2);
  if (weight.size(1) != Cin) op_error(op, "input channels do not match the weight", {&x, &weight});
  if (bias.defined()) {
    check_like(op, x, bias, "bias");
    if (bias.dim() != 1 || bias.size(0) != Cout) op_error(op, "bias must be (out_channels,)", {&weight, &bias});
  }
  check_geometry(op, x, K, stride, padding);
  if (cpu_widens(x)) return conv1d(widened(x), widened(weight), widened(bias), stride, padding, act).to(x.dtype());
  return conv_gemm(op, x.contiguous(), weight.contiguous().reshape({Cout, Cin * K}), Cin * K, K,
                   bias.defined() ? bias.contiguous() : Tensor(), stride, padding, act);
}

namespace detail {

Tensor fold_conv1d_bias(const Tensor& weight, const Tensor& bias) {
  const char* op = "fold_conv1d_bias";
  check_floating(op, weight, "weight");
  check_dim(op, weight, "weight", 3);
  check_like(op, weight, bias, "bias");
  const std::int64_t Cout = weight.size(0), rows = weight.size(1) * weight.size(2);
  if (bias.dim() != 1 || bias.size(0) != Cout) op_error(op, "bias must be (out_channels,)", {&weight, &bias});
  const std::int64_t kp = (rows + 1 + 7) / 8 * 8;
  // Built on the host once per module: float32 holds every float16 and bfloat16 value exactly.
  const Device host(DeviceKind::cpu);
  const std::vector<float> w = weight.to(host).to(DType::float32).contiguous().to_vector<float>();
  const std::vector<float> b = bias.to(host).to(DType::float32).contiguous().to_vector<float>();
  std::vector<float> folded(static_cast<std::size_t>(Cout * kp), 0.0f);
  for (std::int64_t o = 0; o < Cout; ++o) {
    std::copy(w.begin() + o * rows, w.begin() + (o + 1) * rows, folded.begin() + o * kp);
    folded[static_cast<std::size_t>(o * kp + rows)] = b[static_cast<std::size_t>(o)];
  }
  return from_vector(folded, {Cout, kp}, weight.device()).to(weight.dtype());
}

Tensor conv1d_folded(const Tensor& x, const Tensor& folded, std::int64_t in_channels, std::int64_t kernel_size,
                     int stride, int padding, Activation act) {
  const char* op = "conv1d";
  check_floating(op, x, "input");
  check_like(op, x, folded, "weight");
  check_dim(op, x, "input", 3);
  check_dim(op, folded, "folded weight", 2);
  if (x.size(1) != in_channels) op_error(op, "input channels do not match the weight", {&x, &folded});
  if (folded.size(1) <= in_channels * kernel_size) op_error(op, "the folded weight has no bias column", {&folded});
  check_geometry(op, x, kernel_size, stride, padding);
  if (cpu_widens(x)) {
    return conv1d_folded(widened(x), widened(folded), in_channels, kernel_size, stride, padding, act).to(x.dtype());
  }
  return conv_gemm(op, x.contiguous(), folded.contiguous(), folded.size(1), kernel_size, Tensor(), stride, padding, act);
}

}  // namespace detail

}  // namespace streampool
