#pragma once
// MultiheadAttention (self-attention) and TransformerEncoderLayer, with PyTorch's names.

#include "streampool/nn/layers.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

// Self-attention of x ((B, S, E) with batch_first, else (S, B, E)); takes key_padding_mask
// (B, S), bool or uint8, true = padded key.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads, bool bias = true, bool batch_first = true);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  const std::int64_t embed_dim, num_heads;
  const bool has_bias, batch_first;

 private:
  int in_proj_weight_, in_proj_bias_;
  Linear out_proj_;
};

// Takes key_padding_mask as MultiheadAttention does (PyTorch's src_key_padding_mask).
class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(std::int64_t d_model, std::int64_t nhead, std::int64_t dim_feedforward,
                          Activation activation = Activation::relu, bool norm_first = false, double layer_norm_eps = 1e-5,
                          bool batch_first = true);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  const Activation activation;
  const bool norm_first;

 private:
  MultiheadAttention self_attn_;
  Linear linear1_, linear2_;
  LayerNorm norm1_, norm2_;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
