#pragma once
// Functional ops. Each runs on the calling thread's current stream of its inputs' device,
// checks its arguments (shapes, dtypes, devices) and throws InvalidArgument naming the op, the
// shapes, the dtype and the device. Floating inputs are float32, float16 or bfloat16 (all of
// one dtype); float16 and bfloat16 accumulate in float32. float32 GEMMs are true float32
// unless STREAMPOOL_ALLOW_TF32=1.

#include <optional>
#include <vector>

#include "streampool/tensor.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

enum class Activation { none, relu, gelu, gelu_tanh, silu, tanh };

// y = x @ weight^T (+ bias) (then activation). x (..., in), weight (out, in), bias (out) or
// undefined. On CUDA the bias and ReLU / tanh-GELU are fused into the GEMM epilogue.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              Activation activation = Activation::none);

// a (..., m, k) @ b (..., k, n), batch dimensions equal (or b 2-D, shared by the batch).
Tensor matmul(const Tensor& a, const Tensor& b);

// Elementwise with broadcasting (NumPy rules).
Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor activation(const Tensor& x, Activation act);
inline Tensor relu(const Tensor& x) { return activation(x, Activation::relu); }
inline Tensor gelu(const Tensor& x, bool tanh_approximation = false) {
  return activation(x, tanh_approximation ? Activation::gelu_tanh : Activation::gelu);
}
inline Tensor silu(const Tensor& x) { return activation(x, Activation::silu); }
inline Tensor tanh(const Tensor& x) { return activation(x, Activation::tanh); }

// Softmax over the last dimension.
Tensor softmax(const Tensor& x);
// Layer norm over the last dimension, with weight and bias of that size.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);

// Attention: q (B, H, Sq, D), k and v (B, H, Sk, D). key_padding_mask (B, Sk), bool or uint8,
// true = padded key (ignored). causal masks key j > query i. scale defaults to 1/sqrt(D).
// Never materializes a (Sq x Sk) matrix per head in device memory.
// q (B, H, Sq, D), k and v (B, H, Sk, D). The result (B, H, Sq, D) is a view of (B, Sq, H, D)
// memory, so that merging the heads (permute(0, 2, 1, 3) to (B, Sq, H * D)) is free.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask = Tensor(), bool causal = false,
                                    std::optional<double> scale = std::nullopt);

// Rows of `weight` (num, dim) picked by integer `ids` (any shape) -> (ids..., dim).
Tensor embedding(const Tensor& ids, const Tensor& weight);

// x (B, Cin, L), weight (Cout, Cin, K), bias (Cout) or undefined -> (B, Cout, Lout), then the
// activation. On the CPU the bias and the activation are fused into the GEMM's pass.
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), int stride = 1,
              int padding = 0, Activation activation = Activation::none);

// acc (1,) float32 := max(acc, max |a - b|) over all elements (NaN counts as infinity), on the
// current stream: checks results against a reference without a round trip to the host.
void accumulate_max_abs_diff(const Tensor& acc, const Tensor& a, const Tensor& b);

}  // namespace streampool
STREAMPOOL_API_END
