#pragma once
// Modules built by name from a JSON configuration: what a model repository, the golden cases'
// manifest and the bench workloads describe a module with.
//
// Kinds and their fields (PyTorch's names and defaults):
//   linear                     in_features, out_features, bias (true)
//   layer_norm                 normalized_shape, eps (1e-5)
//   conv1d                     in_channels, out_channels, kernel_size, stride (1), padding (0), bias (true)
//   relu, silu, tanh           (none)
//   gelu                       approximate ("none" or "tanh")
//   sequential                 layers: [{"kind": ..., its fields}, ...]
//   mlp                        sizes: [in, hidden..., out], activation ("relu")
//   multihead_attention        embed_dim, num_heads, bias (true), batch_first (false)
//   transformer_encoder_layer  d_model, nhead, dim_feedforward (2048), activation ("relu"),
//                              norm_first (false), layer_norm_eps (1e-5), batch_first (false), dropout (0 only)
//   bert                       vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
//                              intermediate_size, max_position_embeddings (512), type_vocab_size (2),
//                              layer_norm_eps (1e-12), hidden_act ("gelu")
// Activation names: relu, gelu, gelu_tanh (also gelu_new, gelu_pytorch_tanh), silu (swish), tanh.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "streampool/nn/module.h"
#include "streampool/ops.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

// A new, unloaded module of `kind` configured by the JSON object `config`. Throws
// InvalidArgument naming the kind and the field for an unknown kind, a missing or mistyped
// field, an unknown field, or text that is not a JSON object.
std::unique_ptr<Module> make_module(std::string_view kind, std::string_view config);

// The kinds make_module knows, in the order of the table above.
const std::vector<std::string>& module_kinds();

// An activation by its configuration name (the list above); throws InvalidArgument.
Activation parse_activation(std::string_view name);

}  // namespace streampool::nn
STREAMPOOL_API_END
