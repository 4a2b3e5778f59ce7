// softmax and layer_norm over the last dimension.

#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor softmax(const Tensor& x) {
  const char* op = "softmax";
  check_floating(op, x, "input");
  if (x.dim() < 1) op_error(op, "input must have at least one dimension", {&x});
  if (cpu_widens(x)) return softmax(widened(x)).to(x.dtype());
  const DType dt = x.dtype();
  const Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), dt, x.device());
  const std::int64_t n = x.size(-1);
  if (y.numel() == 0) return y;
  const std::int64_t rows = y.numel() / n;
  float* yp = ptr<float>(y);
  const float* xp = ptr<const float>(xc);
  launch(
      op, x.device(), [=] { cpu::softmax_rows(yp, xp, rows, n); },
      [&](void* stream) { cuda::softmax_rows(yp, xp, dt, rows, n, stream); });
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
  if (cpu_widens(x)) return layer_norm(widened(x), widened(weight), widened(bias), eps).to(x.dtype());
  const DType dt = x.dtype();
  const Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  Tensor y = empty(x.shape(), dt, x.device());
  if (y.numel() == 0) return y;
  const std::int64_t rows = y.numel() / n;
  float* yp = ptr<float>(y);
  const float *xp = ptr<const float>(xc), *wp = ptr<const float>(wc), *bp = ptr<const float>(bc);
  const float e = static_cast<float>(eps);
  launch(
      op, x.device(), [=] { cpu::layer_norm_rows(yp, xp, wp, bp, rows, n, e); },
      [&](void* stream) { cuda::layer_norm_rows(yp, xp, wp, bp, dt, rows, n, e, stream); });
  return y;
}

}  // namespace streampool
