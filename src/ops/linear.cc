// linear and matmul: argument checks, then one GEMM on the current stream.

#include "ops/cpu/blas.h"
#include "ops/op_common.h"

namespace streampool {

using namespace detail;

namespace {

void run_gemm(const char* op, const Tensor& out, const GemmArgs& g) {
  const Device dev = out.device();
  const DType dt = out.dtype();
  if (dev.kind == DeviceKind::cpu) cpu::prepare_gemm();  // Note [oneDNN at exit]
  launch(op, dev, [g] { cpu::gemm(g); }, [&](void* stream) { cuda::gemm(dev, dt, g, stream); });
}

}  // namespace

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
  if (cpu_widens(x)) return linear(widened(x), widened(weight), widened(bias), act).to(x.dtype());
  const std::int64_t k = weight.size(1), n = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = n;
  if (k == 0) {
    // No input features: the product is zeros and the result is act(bias) broadcast, as in
    // PyTorch (a GEMM of depth 0 would leave the output unwritten).
    Tensor y = zeros(out_shape, x.dtype(), x.device());
    if (bias.defined()) y = add(y, bias);
    return act == Activation::none ? y : activation(y, act);
  }
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : bias;
  Tensor y = empty(out_shape, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  GemmArgs g;
  g.m = static_cast<int>(x.numel() / k);
  g.n = static_cast<int>(n);
  g.k = static_cast<int>(k);
  g.a = xc.data_ptr();
  g.lda = g.k;
  g.b = wc.data_ptr();
  g.ldb = g.k;
  g.b_transposed = true;
  g.c = y.data_ptr();
  g.ldc = g.n;
  g.bias = ptr(bc);
  g.act = act;
  run_gemm(op, y, g);
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
  if (cpu_widens(a)) return matmul(widened(a), widened(b)).to(a.dtype());
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  if (k == 0) return zeros(out_shape, a.dtype(), a.device());  // an empty sum, as in PyTorch
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor y = empty(out_shape, a.dtype(), a.device());
  if (y.numel() == 0) return y;
  GemmArgs g;
  g.batch = static_cast<int>(shape_numel(batch_shape));
  g.m = static_cast<int>(m);
  g.n = static_cast<int>(n);
  g.k = static_cast<int>(k);
  g.a = ac.data_ptr();
  g.lda = g.k;
  g.stride_a = m * k;
  g.b = bc.data_ptr();
  g.ldb = g.n;
  g.stride_b = shared_b ? 0 : k * n;
  g.c = y.data_ptr();
  g.ldc = g.n;
  g.stride_c = m * n;
  run_gemm(op, y, g);
  return y;
}

}  // namespace streampool
