#pragma once
// MultiheadAttention (self-attention) and TransformerEncoderLayer, with PyTorch's names.

#include "streampool/nn/layers.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads, bool bias = true, bool batch_first = true);
  Tensor forward(const Tensor& x) const override { return forward(x, Tensor()); }
  // Self-attention of x ((B, S, E) with batch_first, else (S, B, E)); key_padding_mask (B, S),
  // bool or uint8, true = padded key.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask) const;
  std::int64_t embed_dim, num_heads;
  bool has_bias, batch_first;
  Tensor in_proj_weight, in_proj_bias;
  Linear out_proj;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;
};

class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(std::int64_t d_model, std::int64_t nhead, std::int64_t dim_feedforward,
                          Activation activation = Activation::relu, bool norm_first = false, double layer_norm_eps = 1e-5,
                          bool batch_first = true);
  Tensor forward(const Tensor& x) const override { return forward(x, Tensor()); }
  Tensor forward(const Tensor& x, const Tensor& src_key_padding_mask) const;
  Activation activation;
  bool norm_first;
  MultiheadAttention self_attn;
  Linear linear1, linear2;
  LayerNorm norm1, norm2;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
