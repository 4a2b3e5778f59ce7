#include "streampool/nn/bert.h"

#include "streampool/error.h"

namespace streampool::nn {

BertModel::BertModel(const BertConfig& c)
    : config(c), embed_norm(c.hidden_size, c.layer_norm_eps), pooler(c.hidden_size, c.hidden_size) {
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) {
    throw InvalidArgument("BertModel: hidden_size must be divisible by num_attention_heads");
  }
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    Layer l;
    l.query = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.key = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.value = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.attn_out = std::make_unique<Linear>(c.hidden_size, c.hidden_size);
    l.intermediate = std::make_unique<Linear>(c.hidden_size, c.intermediate_size);
    l.output = std::make_unique<Linear>(c.intermediate_size, c.hidden_size);
    l.attn_norm = std::make_unique<LayerNorm>(c.hidden_size, c.layer_norm_eps);
    l.out_norm = std::make_unique<LayerNorm>(c.hidden_size, c.layer_norm_eps);
    layers_.push_back(std::move(l));
  }
}

void BertModel::collect(const std::string& p, std::vector<Param>& out) {
  out.push_back({p + "embeddings.word_embeddings.weight", {config.vocab_size, config.hidden_size}, &word_embeddings});
  out.push_back({p + "embeddings.position_embeddings.weight", {config.max_position_embeddings, config.hidden_size},
                 &position_embeddings});
  out.push_back({p + "embeddings.token_type_embeddings.weight", {config.type_vocab_size, config.hidden_size},
                 &token_type_embeddings});
  collect_child(embed_norm, p + "embeddings.LayerNorm.", out);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const std::string l = p + "encoder.layer." + std::to_string(i) + ".";
    collect_child(*layers_[i].query, l + "attention.self.query.", out);
    collect_child(*layers_[i].key, l + "attention.self.key.", out);
    collect_child(*layers_[i].value, l + "attention.self.value.", out);
    collect_child(*layers_[i].attn_out, l + "attention.output.dense.", out);
    collect_child(*layers_[i].attn_norm, l + "attention.output.LayerNorm.", out);
    collect_child(*layers_[i].intermediate, l + "intermediate.dense.", out);
    collect_child(*layers_[i].output, l + "output.dense.", out);
    collect_child(*layers_[i].out_norm, l + "output.LayerNorm.", out);
  }
  collect_child(pooler, p + "pooler.dense.", out);
}

Tensor BertModel::forward(const Tensor& input_ids) const { return forward(input_ids, Tensor(), Tensor()).last_hidden_state; }

BertOutput BertModel::forward(const Tensor& ids, const Tensor& attention_mask, const Tensor& token_type_ids) const {
  check_loaded("BertModel", word_embeddings);
  if (!ids.defined() || ids.dim() != 2) throw InvalidArgument("BertModel: input_ids must be (batch, seq), got " + ids.str());
  const Device dev = device();
  if (ids.device() != dev) throw InvalidArgument("BertModel: input_ids are on " + ids.device().str() + ", the model on " + dev.str());
  const std::int64_t B = ids.size(0), S = ids.size(1), E = config.hidden_size, H = config.num_attention_heads,
                     D = E / H;
  if (S > config.max_position_embeddings) {
    throw InvalidArgument("BertModel: sequence length " + std::to_string(S) + " exceeds max_position_embeddings " +
                          std::to_string(config.max_position_embeddings));
  }
  for (const Tensor* t : {&attention_mask, &token_type_ids}) {
    if (t->defined() && (t->shape() != ids.shape() || t->device() != dev)) {
      throw InvalidArgument("BertModel: attention_mask and token_type_ids must match input_ids " + ids.str() + ", got " +
                            t->str());
    }
  }
  Tensor h = embedding(ids, word_embeddings);
  h = add(h, position_embeddings.slice(0, 0, S));
  h = add(h, token_type_ids.defined() ? embedding(token_type_ids, token_type_embeddings)
                                      : token_type_embeddings.select(0, 0));
  h = embed_norm.forward(h);
  // attention_mask: 1 = real token. Attention wants true = padded key: 1 - mask.
  Tensor pad;
  if (attention_mask.defined()) {
    pad = add(mul(attention_mask.to(dtype()), full({1}, -1.0, dtype(), dev)), full({1}, 1.0, dtype(), dev))
              .to(DType::boolean);
  }
  for (const Layer& l : layers_) {
    auto heads = [&](const Linear& proj) { return proj.forward(h).view({B, S, H, D}).permute({0, 2, 1, 3}); };
    Tensor ctx = scaled_dot_product_attention(heads(*l.query), heads(*l.key), heads(*l.value), pad);
    Tensor merged = ctx.permute({0, 2, 1, 3}).contiguous().view({B, S, E});
    h = l.attn_norm->forward(add(h, l.attn_out->forward(merged)));
    Tensor inner = l.intermediate->forward(h, config.hidden_act);
    h = l.out_norm->forward(add(h, l.output->forward(inner)));
  }
  BertOutput out;
  out.last_hidden_state = h;
  out.pooler_output = pooler.forward(h.select(1, 0), Activation::tanh);
  return out;
}

}  // namespace streampool::nn
