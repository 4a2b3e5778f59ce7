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

struct BertOutput {
  Tensor last_hidden_state;  // (B, S, hidden)
  Tensor pooler_output;      // (B, hidden)
};

class BertModel : public Module {
 public:
  explicit BertModel(const BertConfig& config);
  // input_ids (B, S) int64; attention_mask (B, S), 1 = real token (undefined: all real);
  // token_type_ids (B, S) (undefined: zeros).
  BertOutput forward(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& token_type_ids) const;
  Tensor forward(const Tensor& input_ids) const override;
  const BertConfig config;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;

 private:
  struct Layer {
    std::unique_ptr<Linear> query, key, value, attn_out, intermediate, output;
    std::unique_ptr<LayerNorm> attn_norm, out_norm;
  };
  Tensor word_embeddings, position_embeddings, token_type_embeddings;
  LayerNorm embed_norm;
  std::vector<Layer> layers_;
  Linear pooler;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
