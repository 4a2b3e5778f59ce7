#include "workloads.h"

#include <cmath>

#include "streampool/error.h"
#include <map>

#include "streampool/nn/registry.h"

namespace streampool::bench {

namespace {

// PyTorch-like initialisation: weights uniform in +-1/sqrt(fan_in), norms at one and zero.
void randomize(nn::Module& m, const Device& device, DType dtype) {
  nn::StateDict sd;
  std::uint64_t seed = 1234;
  const Device cpu(DeviceKind::cpu);
  for (const auto& [name, shape] : m.parameters()) {
    const bool norm = name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos;
    if (norm) {
      sd[name] = full(shape, name.size() > 6 && name.substr(name.size() - 6) == "weight" ? 1.0 : 0.0, DType::float32, cpu);
      continue;
    }
    std::int64_t fan_in = shape.size() >= 2 ? shape[1] * (shape.size() > 2 ? shape[2] : 1) : shape[0];
    if (name.find("embeddings") != std::string::npos) fan_in = 2500;  // std ~ 0.02 as BERT's init
    const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<std::int64_t>(fan_in, 1)));
    sd[name] = rand(shape, DType::float32, cpu, seed++, -bound, bound);
  }
  m.load_state_dict(sd, device, dtype);
}

}  // namespace

const std::vector<std::string>& workload_names() {
  static const std::vector<std::string> names = {"mlp", "encoder", "linear4096", "conv1d", "bert-minilm", "linear2048"};
  return names;
}

Workload make_workload(const std::string& name, const Device& device, DType dtype) {
  struct Spec {
    const char* kind;
    const char* config;
    Shape input;  // one request's
  };
  // The modules of WORKLOADS.md, in the registry's configuration form.
  static const std::map<std::string, Spec> specs = {
      {"mlp", {"mlp", R"({"sizes": [256, 1024, 1024, 256], "activation": "gelu"})", {1, 256}}},
      {"encoder",
       {"transformer_encoder_layer",
        R"({"d_model": 512, "nhead": 8, "dim_feedforward": 2048, "activation": "relu", "batch_first": true})",
        {1, 128, 512}}},
      {"linear4096", {"linear", R"({"in_features": 4096, "out_features": 4096})", {32, 4096}}},
      // The MPS suite's large-workload efficiency case (12): two threads at least 1.6x one.
      {"linear2048", {"linear", R"({"in_features": 2048, "out_features": 2048})", {64, 2048}}},
      {"conv1d",
       {"sequential", R"({"layers": [
          {"kind": "conv1d", "in_channels": 80, "out_channels": 256, "kernel_size": 5, "padding": 2}, {"kind": "relu"},
          {"kind": "conv1d", "in_channels": 256, "out_channels": 256, "kernel_size": 5, "padding": 2}, {"kind": "relu"},
          {"kind": "conv1d", "in_channels": 256, "out_channels": 80, "kernel_size": 1}]})",
        {1, 80, 400}}},
      {"bert-minilm",
       {"bert", R"({"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                   "intermediate_size": 1536, "max_position_embeddings": 512})",
        {1, 128}}},
  };
  auto it = specs.find(name);
  if (it == specs.end()) {
    throw InvalidArgument("unknown workload '" + name + "' (mlp, encoder, linear4096, conv1d, bert-minilm, linear2048)");
  }
  std::shared_ptr<nn::Module> m = nn::make_module(it->second.kind, it->second.config);
  randomize(*m, device, dtype);
  Workload w;
  w.name = name;
  w.model = m;
  w.device = device;
  w.dtype = dtype;
  w.ids = std::string(it->second.kind) == "bert";
  w.shape = it->second.input;
  return w;
}

nn::Input Workload::input(int index) const {
  const auto seed = static_cast<std::uint64_t>(99 + 7919 * index);
  if (ids) {
    Tensor r = rand(shape, DType::float32, Device(DeviceKind::cpu), seed, 0.0, 30521.0);
    return nn::Input(r.to(DType::int64).to(device));
  }
  return nn::Input(randn(shape, dtype, device, seed));
}

}  // namespace streampool::bench
