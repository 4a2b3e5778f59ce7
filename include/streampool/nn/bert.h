#pragma once
// BertModel with Hugging Face parameter names (embeddings, encoder layers, pooler).

#include <memory>
#include <vector>

#include "streampool/nn/layers.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

struct BertConfig {
  std::int64_t vocab_size = 30522;
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t intermediate_size = 3072;
  std::int64_t max_position_embeddings = 512;
  std::int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  Activation hidden_act = Activation::gelu;
};

// Takes x = input_ids (B, S) int64; attention_mask (B, S), 1 = real token, or equally
// key_padding_mask (true = padded), not both (neither: all real); token_type_ids (B, S)
// (undefined: zeros). Output y = last_hidden_state (B, S, hidden), pooled = pooler_output (B, hidden).
class BertModel : public Module {
 public:
  explicit BertModel(const BertConfig& config);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  const BertConfig config;

 private:
  struct Layer {
    std::unique_ptr<Linear> query, key, value, attn_out, intermediate, output;
    std::unique_ptr<LayerNorm> attn_norm, out_norm;
  };
  int word_embeddings_, position_embeddings_, token_type_embeddings_;
  LayerNorm embed_norm_;
  std::vector<Layer> layers_;
  Linear pooler_;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
