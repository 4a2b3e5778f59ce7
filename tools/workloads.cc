#include "workloads.h"

#include <cmath>

#include "streampool/error.h"
#include "streampool/nn/bert.h"
#include "streampool/nn/layers.h"
#include "streampool/nn/transformer.h"

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

template <typename M>
std::shared_ptr<M> loaded(std::shared_ptr<M> m, const Device& d, DType t) {
  randomize(*m, d, t);
  return m;
}

}  // namespace

const std::vector<std::string>& workload_names() {
  static const std::vector<std::string> names = {"mlp", "encoder", "linear4096", "conv1d", "bert-minilm"};
  return names;
}

Workload make_workload(const std::string& name, const Device& device, DType dtype) {
  Workload w;
  w.name = name;
  auto float_input = [](Shape shape) {
    return [shape](const Device& d, DType t) { return randn(shape, t, d, 99); };
  };
  if (name == "mlp") {
    auto m = loaded(std::shared_ptr<nn::Sequential>(nn::make_mlp({256, 1024, 1024, 256}, Activation::gelu)), device, dtype);
    w.model = m;
    w.forward = [m](const Tensor& x) { return m->forward(x); };
    w.make_input = float_input({1, 256});
  } else if (name == "encoder") {
    auto m = loaded(std::make_shared<nn::TransformerEncoderLayer>(512, 8, 2048, Activation::relu, false, 1e-5, true),
                    device, dtype);
    w.model = m;
    w.forward = [m](const Tensor& x) { return m->forward(x); };
    w.make_input = float_input({1, 128, 512});
  } else if (name == "linear4096") {
    auto m = loaded(std::make_shared<nn::Linear>(4096, 4096), device, dtype);
    w.model = m;
    w.forward = [m](const Tensor& x) { return m->forward(x); };
    w.make_input = float_input({32, 4096});
  } else if (name == "conv1d") {
    auto seq = std::make_shared<nn::Sequential>();
    seq->add(std::make_unique<nn::Conv1d>(80, 256, 5, 1, 2));
    seq->add(std::make_unique<nn::ActivationLayer>(Activation::relu));
    seq->add(std::make_unique<nn::Conv1d>(256, 256, 5, 1, 2));
    seq->add(std::make_unique<nn::ActivationLayer>(Activation::relu));
    seq->add(std::make_unique<nn::Conv1d>(256, 80, 1));
    auto m = loaded(seq, device, dtype);
    w.model = m;
    w.forward = [m](const Tensor& x) { return m->forward(x); };
    w.make_input = float_input({1, 80, 400});
  } else if (name == "bert-minilm") {
    nn::BertConfig c;
    c.vocab_size = 30522;
    c.hidden_size = 384;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 12;
    c.intermediate_size = 1536;
    c.max_position_embeddings = 512;
    auto m = loaded(std::make_shared<nn::BertModel>(c), device, dtype);
    w.model = m;
    w.forward = [m](const Tensor& ids) { return m->forward(ids, Tensor(), Tensor()).last_hidden_state; };
    w.make_input = [](const Device& d, DType) {
      Tensor r = rand({1, 128}, DType::float32, Device(DeviceKind::cpu), 7, 0.0, 30521.0);
      return r.to(DType::int64).to(d);
    };
  } else {
    throw InvalidArgument("unknown workload '" + name + "' (mlp, encoder, linear4096, conv1d, bert-minilm)");
  }
  return w;
}

}  // namespace streampool::bench
