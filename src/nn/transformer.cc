#include "streampool/nn/transformer.h"

#include "streampool/error.h"

namespace streampool::nn {

MultiheadAttention::MultiheadAttention(std::int64_t e, std::int64_t h, bool bias, bool bf)
    : embed_dim(e), num_heads(h), has_bias(bias), batch_first(bf), out_proj(e, e, bias) {
  if (h <= 0 || e % h != 0) throw InvalidArgument("MultiheadAttention: embed_dim must be divisible by num_heads");
}

void MultiheadAttention::collect(const std::string& prefix, std::vector<Param>& out) {
  out.push_back({prefix + "in_proj_weight", {3 * embed_dim, embed_dim}, &in_proj_weight});
  if (has_bias) out.push_back({prefix + "in_proj_bias", {3 * embed_dim}, &in_proj_bias});
  collect_child(out_proj, prefix + "out_proj.", out);
}

Tensor MultiheadAttention::forward(const Tensor& x_in, const Tensor& key_padding_mask) const {
  check_loaded("MultiheadAttention", in_proj_weight);
  if (!x_in.defined() || x_in.dim() != 3 || x_in.size(2) != embed_dim) {
    throw InvalidArgument("MultiheadAttention: input must be 3-D with last dimension " + std::to_string(embed_dim) +
                          ", got " + x_in.str());
  }
  const Tensor x = batch_first ? x_in : x_in.transpose(0, 1);
  const std::int64_t B = x.size(0), S = x.size(1), H = num_heads, D = embed_dim / num_heads;
  // One GEMM for q, k and v; heads are strided views of its output, no copies.
  Tensor qkv = linear(x, in_proj_weight, in_proj_bias).view({B, S, 3, H, D});
  Tensor q = qkv.select(2, 0).permute({0, 2, 1, 3});
  Tensor k = qkv.select(2, 1).permute({0, 2, 1, 3});
  Tensor v = qkv.select(2, 2).permute({0, 2, 1, 3});
  Tensor attn = scaled_dot_product_attention(q, k, v, key_padding_mask);
  Tensor merged = attn.permute({0, 2, 1, 3}).contiguous().view({B, S, embed_dim});
  Tensor y = out_proj.forward(merged);
  return batch_first ? y : y.transpose(0, 1);
}

TransformerEncoderLayer::TransformerEncoderLayer(std::int64_t d, std::int64_t nhead, std::int64_t ff, Activation act,
                                                 bool nf, double eps, bool batch_first)
    : activation(act),
      norm_first(nf),
      self_attn(d, nhead, true, batch_first),
      linear1(d, ff),
      linear2(ff, d),
      norm1(d, eps),
      norm2(d, eps) {}

void TransformerEncoderLayer::collect(const std::string& prefix, std::vector<Param>& out) {
  collect_child(self_attn, prefix + "self_attn.", out);
  collect_child(linear1, prefix + "linear1.", out);
  collect_child(linear2, prefix + "linear2.", out);
  collect_child(norm1, prefix + "norm1.", out);
  collect_child(norm2, prefix + "norm2.", out);
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const Tensor& mask) const {
  check_loaded("TransformerEncoderLayer", linear1.weight);
  auto ff = [&](const Tensor& h) { return linear2.forward(linear1.forward(h, activation)); };
  if (norm_first) {
    Tensor h = add(x, self_attn.forward(norm1.forward(x), mask));
    return add(h, ff(norm2.forward(h)));
  }
  Tensor h = norm1.forward(add(x, self_attn.forward(x, mask)));
  return norm2.forward(add(h, ff(h)));
}

}  // namespace streampool::nn
