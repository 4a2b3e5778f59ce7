#include "streampool/nn/bert.h"

#include <algorithm>

#include "streampool/error.h"

namespace streampool::nn {

BertModel::BertModel(const BertConfig& c)
    : Module("BertModel"), config(c), embed_norm_(c.hidden_size, c.layer_norm_eps), pooler_(c.hidden_size, c.hidden_size) {
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) {
    throw InvalidArgument("BertModel: hidden_size must be divisible by num_attention_heads");
  }
  word_embeddings_ = register_parameter("embeddings.word_embeddings.weight", {c.vocab_size, c.hidden_size});
  position_embeddings_ =
      register_parameter("embeddings.position_embeddings.weight", {c.max_position_embeddings, c.hidden_size});
  token_type_embeddings_ = register_parameter("embeddings.token_type_embeddings.weight", {c.type_vocab_size, c.hidden_size});
  register_module("embeddings.LayerNorm.", embed_norm_);
  layers_.resize(static_cast<std::size_t>(std::max<std::int64_t>(c.num_hidden_layers, 0)));
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = layers_[i];
    l.query = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.key = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.value = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.attn_out = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.intermediate = std::make_unique<Linear>(c.hidden_size, c.intermediate_size);
    l.output = std::make_unique<Linear>(c.intermediate_size, c.hidden_size);
    l.attn_norm = std::make_unique<LayerNorm>(c.hidden_size, c.layer_norm_eps);
    l.out_norm = std::make_unique<LayerNorm>(c.hidden_size, c.layer_norm_eps);
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    register_module(p + "attention.self.query.", *l.query);
    register_module(p + "attention.self.key.", *l.key);
    register_module(p + "attention.self.value.", *l.value);
    register_module(p + "attention.output.dense.", *l.attn_out);
    register_module(p + "attention.output.LayerNorm.", *l.attn_norm);
    register_module(p + "intermediate.dense.", *l.intermediate);
    register_module(p + "output.dense.", *l.output);
    register_module(p + "output.LayerNorm.", *l.out_norm);
  }
  register_module("pooler.dense.", pooler_);
}

Output BertModel::forward(const Input& in) const {
  check_input(in, takes_key_padding_mask | takes_bert_fields);
  const Tensor& ids = in.x;
  const Tensor& attention_mask = in.attention_mask;
  const Tensor& token_type_ids = in.token_type_ids;
  if (attention_mask.defined() && in.key_padding_mask.defined()) {
    throw InvalidArgument("BertModel: give attention_mask (1 = real) or key_padding_mask (true = padded), not both");
  }
  const Tensor& word_embeddings = param(word_embeddings_);
  const Tensor& position_embeddings = param(position_embeddings_);
  const Tensor& token_type_embeddings = param(token_type_embeddings_);
  if (ids.dim() != 2) throw InvalidArgument("BertModel: input_ids must be (batch, seq), got " + ids.str());
  const Device dev = device();
  if (ids.device() != dev) throw InvalidArgument("BertModel: input_ids are on " + ids.device().str() + ", the model on " + dev.str());
  const std::int64_t B = ids.size(0), S = ids.size(1), E = config.hidden_size, H = config.num_attention_heads,
                     D = E / H;
  if (S > config.max_position_embeddings) {
    throw InvalidArgument("BertModel: sequence length " + std::to_string(S) + " exceeds max_position_embeddings " +
                          std::to_string(config.max_position_embeddings));
  }
  for (const Tensor* t : {&attention_mask, &in.key_padding_mask, &token_type_ids}) {
    if (t->defined() && (t->shape() != ids.shape() || t->device() != dev)) {
      throw InvalidArgument("BertModel: masks and token_type_ids must match input_ids " + ids.str() + ", got " +
                            t->str());
    }
  }
  Tensor h = embedding(ids, word_embeddings);
  h = add(h, position_embeddings.slice(0, 0, S));
  h = add(h, token_type_ids.defined() ? embedding(token_type_ids, token_type_embeddings)
                                      : token_type_embeddings.select(0, 0));
  h = call(embed_norm_, h);
  // attention_mask: 1 = real token. Attention wants true = padded key: 1 - mask.
  Tensor pad = in.key_padding_mask;
  if (attention_mask.defined()) {
    pad = add(mul(attention_mask.to(dtype()), full({1}, -1.0, dtype(), dev)), full({1}, 1.0, dtype(), dev))
              .to(DType::boolean);
  }
  for (const Layer& l : layers_) {
    auto heads = [&](const Linear& proj) { return call(proj, h).view({B, S, H, D}).permute({0, 2, 1, 3}); };
    Tensor ctx = scaled_dot_product_attention(heads(*l.query), heads(*l.key), heads(*l.value), pad);
    Tensor merged = ctx.permute({0, 2, 1, 3}).contiguous().view({B, S, E});
    h = call(*l.attn_norm, add(h, call(*l.attn_out, merged)));
    Tensor inner = l.intermediate->forward_fused(h, config.hidden_act);
    h = call(*l.out_norm, add(h, call(*l.output, inner)));
  }
  Output out;
  out.y = h;
  out.pooled = pooler_.forward_fused(h.select(1, 0), Activation::tanh);
  return out;
}

}  // namespace streampool::nn

namespace streampool::nn {

InputSpec BertModel::input_spec() const {
  InputSpec s;
  s.dims = {-1};
  s.seq_dim = 1;
  s.pad = true;
  s.ids = true;
  s.max_len = config.max_position_embeddings;
  s.id_limit = config.vocab_size;
  s.type_id_limit = config.type_vocab_size;
  return s;
}

}  // namespace streampool::nn
