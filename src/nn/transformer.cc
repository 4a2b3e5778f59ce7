#include "streampool/nn/transformer.h"

#include "streampool/error.h"

namespace streampool::nn {

MultiheadAttention::MultiheadAttention(std::int64_t e, std::int64_t h, bool bias, bool bf)
    : Module("MultiheadAttention"), embed_dim(e), num_heads(h), has_bias(bias), batch_first(bf), out_proj_(e, e, bias) {
  if (h <= 0 || e % h != 0) throw InvalidArgument("MultiheadAttention: embed_dim must be divisible by num_heads");
  in_proj_weight_ = register_parameter("in_proj_weight", {3 * e, e});
  in_proj_bias_ = bias ? register_parameter("in_proj_bias", {3 * e}) : -1;
  register_module("out_proj.", out_proj_);
}

Output MultiheadAttention::forward(const Input& in) const {
  check_input(in, takes_key_padding_mask);
  const Tensor& x_in = in.x;
  if (x_in.dim() != 3 || x_in.size(2) != embed_dim) {
    throw InvalidArgument("MultiheadAttention: input must be 3-D with last dimension " + std::to_string(embed_dim) +
                          ", got " + x_in.str());
  }
  const Tensor x = batch_first ? x_in : x_in.transpose(0, 1);
  const std::int64_t B = x.size(0), S = x.size(1), H = num_heads, D = embed_dim / num_heads;
  // One GEMM for q, k and v; heads are strided views of its output, no copies.
  Tensor qkv = linear(x, param(in_proj_weight_), param(in_proj_bias_)).view({B, S, 3, H, D});
  Tensor q = qkv.select(2, 0).permute({0, 2, 1, 3});
  Tensor k = qkv.select(2, 1).permute({0, 2, 1, 3});
  Tensor v = qkv.select(2, 2).permute({0, 2, 1, 3});
  Tensor attn = scaled_dot_product_attention(q, k, v, in.key_padding_mask);
  Tensor merged = attn.permute({0, 2, 1, 3}).contiguous().view({B, S, embed_dim});
  Tensor y = call(out_proj_, merged);
  return {batch_first ? y : y.transpose(0, 1), Tensor()};
}

TransformerEncoderLayer::TransformerEncoderLayer(std::int64_t d, std::int64_t nhead, std::int64_t ff, Activation act,
                                                 bool nf, double eps, bool batch_first)
    : Module("TransformerEncoderLayer"),
      activation(act),
      norm_first(nf),
      self_attn_(d, nhead, true, batch_first),
      linear1_(d, ff),
      linear2_(ff, d),
      norm1_(d, eps),
      norm2_(d, eps) {
  register_module("self_attn.", self_attn_);
  register_module("linear1.", linear1_);
  register_module("linear2.", linear2_);
  register_module("norm1.", norm1_);
  register_module("norm2.", norm2_);
}

Output TransformerEncoderLayer::forward(const Input& in) const {
  check_input(in, takes_key_padding_mask);
  const Tensor& x = in.x;
  auto attend = [&](const Tensor& h) {
    Input a(h);
    a.key_padding_mask = in.key_padding_mask;
    return self_attn_.forward(a).y;
  };
  auto ff = [&](const Tensor& h) { return call(linear2_, linear1_.forward_fused(h, activation)); };
  if (norm_first) {
    Tensor h = add(x, attend(call(norm1_, x)));
    return {add(h, ff(call(norm2_, h))), Tensor()};
  }
  Tensor h = call(norm1_, add(x, attend(x)));
  return {call(norm2_, add(h, ff(h))), Tensor()};
}

}  // namespace streampool::nn

namespace streampool::nn {

InputSpec MultiheadAttention::input_spec() const {
  InputSpec s;
  s.batchable = batch_first;  // (S, B, E): dimension 0 is not the batch
  s.dims = {-1, embed_dim};
  s.seq_dim = 1;
  s.pad = true;  // a padded key is masked: the real positions' outputs do not change
  return s;
}

InputSpec TransformerEncoderLayer::input_spec() const { return self_attn_.input_spec(); }

}  // namespace streampool::nn
