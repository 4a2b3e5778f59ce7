#include "golden_runner.h"

#include <cmath>
#include <fstream>

#include "streampool/error.h"
#include "streampool/nn/bert.h"
#include "streampool/nn/layers.h"
#include "streampool/nn/transformer.h"
#include "streampool/ops.h"

namespace streampool::golden {

namespace {

using nlohmann::json;

template <typename T>
T cfg(const json& c, const char* key, T fallback) {
  return c.contains(key) && !c[key].is_null() ? c[key].get<T>() : fallback;
}

Activation parse_act(const std::string& s, const std::string& approximate = "none") {
  if (s == "relu") return Activation::relu;
  if (s == "gelu") return approximate == "tanh" ? Activation::gelu_tanh : Activation::gelu;
  if (s == "gelu_new" || s == "gelu_pytorch_tanh") return Activation::gelu_tanh;
  if (s == "silu" || s == "swish") return Activation::silu;
  if (s == "tanh") return Activation::tanh;
  throw InvalidArgument("golden: unknown activation '" + s + "'");
}

nn::StateDict params_of(const Case& c, const SafetensorsFile& f) {
  nn::StateDict sd;
  for (const auto& p : c.params) sd[p] = f.load(p, Device(DeviceKind::cpu));
  return sd;
}

// A single module whose forward takes the case's one input and gives "output".
class ModuleModel : public Model {
 public:
  explicit ModuleModel(std::unique_ptr<nn::Module> m) : m_(std::move(m)) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    return {{"output", m_->forward(in.at("input"))}};
  }

 private:
  std::unique_ptr<nn::Module> m_;
};

class ActivationsModel : public Model {
 public:
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    const Tensor& x = in.at("input");
    return {{"gelu_erf", gelu(x)}, {"gelu_tanh", gelu(x, true)}, {"relu", relu(x)}, {"softmax", softmax(x)},
            {"silu", silu(x)}};
  }
};

class SdpaModel : public Model {
 public:
  explicit SdpaModel(std::optional<double> scale) : scale_(scale) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    const Tensor &q = in.at("q"), &k = in.at("k"), &v = in.at("v");
    return {{"output", scaled_dot_product_attention(q, k, v, Tensor(), false, scale_)},
            {"output_causal", scaled_dot_product_attention(q, k, v, Tensor(), true, scale_)}};
  }

 private:
  std::optional<double> scale_;
};

template <typename M>
class MaskedModel : public Model {
 public:
  explicit MaskedModel(std::unique_ptr<M> m) : m_(std::move(m)) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    std::map<std::string, Tensor> out{{"output", m_->forward(in.at("input"), Tensor())}};
    if (in.count("key_padding_mask")) out["output_masked"] = m_->forward(in.at("input"), in.at("key_padding_mask"));
    return out;
  }

 private:
  std::unique_ptr<M> m_;
};

class BertModelCase : public Model {
 public:
  explicit BertModelCase(std::unique_ptr<nn::BertModel> m) : m_(std::move(m)) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    auto get = [&](const char* n) { return in.count(n) ? in.at(n) : Tensor(); };
    nn::BertOutput o = m_->forward(in.at("input_ids"), get("attention_mask"), get("token_type_ids"));
    return {{"last_hidden_state", o.last_hidden_state}, {"pooler_output", o.pooler_output}};
  }

 private:
  std::unique_ptr<nn::BertModel> m_;
};

std::unique_ptr<nn::Module> build_layer(const json& l) {
  const std::string kind = l.at("kind").get<std::string>();
  if (kind == "linear") {
    return std::make_unique<nn::Linear>(l.at("in_features").get<std::int64_t>(), l.at("out_features").get<std::int64_t>(),
                                        cfg<bool>(l, "bias", true));
  }
  if (kind == "conv1d") {
    return std::make_unique<nn::Conv1d>(l.at("in_channels").get<std::int64_t>(), l.at("out_channels").get<std::int64_t>(),
                                        l.at("kernel_size").get<std::int64_t>(), cfg<int>(l, "stride", 1),
                                        cfg<int>(l, "padding", 0), cfg<bool>(l, "bias", true));
  }
  if (kind == "gelu") return std::make_unique<nn::ActivationLayer>(parse_act("gelu", cfg<std::string>(l, "approximate", "none")));
  if (kind == "relu" || kind == "silu" || kind == "tanh") return std::make_unique<nn::ActivationLayer>(parse_act(kind));
  throw InvalidArgument("golden: unknown sequential layer kind '" + kind + "'");
}

}  // namespace

std::vector<Case> load_manifest(const std::string& dir) {
  std::ifstream in(dir + "/manifest.json");
  if (!in) throw FormatError("golden: cannot read " + dir + "/manifest.json");
  json m;
  try {
    m = json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError("golden: " + dir + "/manifest.json is not valid JSON: " + e.what());
  }
  if (!m.contains("cases") || !m["cases"].is_array()) throw FormatError("golden: manifest has no \"cases\" array");
  std::vector<Case> out;
  for (const auto& c : m["cases"]) {
    try {
      Case k;
      k.name = c.at("name").get<std::string>();
      k.file = c.at("file").get<std::string>();
      k.kind = c.at("kind").get<std::string>();
      k.config = c.value("config", json::object());
      k.params = c.value("params", std::vector<std::string>{});
      k.inputs = c.at("inputs").get<std::vector<std::string>>();
      k.outputs = c.at("outputs").get<std::vector<std::string>>();
      out.push_back(std::move(k));
    } catch (const json::exception& e) {
      throw FormatError("golden: a case of the manifest is malformed: " + std::string(e.what()));
    }
  }
  return out;
}

std::unique_ptr<Model> build(const Case& c, const SafetensorsFile& f, const Device& device, DType dtype) {
  const json& k = c.config;
  auto loaded = [&](auto m) {
    m->load_state_dict(params_of(c, f), device, dtype);
    return m;
  };
  if (c.kind == "linear") {
    return std::make_unique<ModuleModel>(loaded(std::make_unique<nn::Linear>(
        k.at("in_features").get<std::int64_t>(), k.at("out_features").get<std::int64_t>(), cfg<bool>(k, "bias", true))));
  }
  if (c.kind == "sequential") {
    auto seq = std::make_unique<nn::Sequential>();
    for (const auto& l : k.at("layers")) seq->add(build_layer(l));
    return std::make_unique<ModuleModel>(loaded(std::move(seq)));
  }
  if (c.kind == "layer_norm") {
    return std::make_unique<ModuleModel>(loaded(std::make_unique<nn::LayerNorm>(
        k.at("normalized_shape").get<std::int64_t>(), cfg<double>(k, "eps", 1e-5))));
  }
  if (c.kind == "activations") {
    if (cfg<int>(k, "softmax_dim", -1) != -1) throw InvalidArgument("golden: softmax over a dimension other than the last");
    return std::make_unique<ActivationsModel>();
  }
  if (c.kind == "sdpa") {
    std::optional<double> scale;
    if (k.contains("scale") && !k["scale"].is_null()) scale = k["scale"].get<double>();
    return std::make_unique<SdpaModel>(scale);
  }
  if (c.kind == "multihead_attention") {
    return std::make_unique<MaskedModel<nn::MultiheadAttention>>(loaded(std::make_unique<nn::MultiheadAttention>(
        k.at("embed_dim").get<std::int64_t>(), k.at("num_heads").get<std::int64_t>(), cfg<bool>(k, "bias", true),
        cfg<bool>(k, "batch_first", false))));
  }
  if (c.kind == "transformer_encoder_layer") {
    return std::make_unique<MaskedModel<nn::TransformerEncoderLayer>>(loaded(std::make_unique<nn::TransformerEncoderLayer>(
        k.at("d_model").get<std::int64_t>(), k.at("nhead").get<std::int64_t>(), cfg<std::int64_t>(k, "dim_feedforward", 2048),
        parse_act(cfg<std::string>(k, "activation", "relu")), cfg<bool>(k, "norm_first", false),
        cfg<double>(k, "layer_norm_eps", 1e-5), cfg<bool>(k, "batch_first", false))));
  }
  if (c.kind == "bert") {
    nn::BertConfig b;
    b.vocab_size = k.at("vocab_size").get<std::int64_t>();
    b.hidden_size = k.at("hidden_size").get<std::int64_t>();
    b.num_hidden_layers = k.at("num_hidden_layers").get<std::int64_t>();
    b.num_attention_heads = k.at("num_attention_heads").get<std::int64_t>();
    b.intermediate_size = k.at("intermediate_size").get<std::int64_t>();
    b.max_position_embeddings = cfg<std::int64_t>(k, "max_position_embeddings", 512);
    b.type_vocab_size = cfg<std::int64_t>(k, "type_vocab_size", 2);
    b.layer_norm_eps = cfg<double>(k, "layer_norm_eps", 1e-12);
    b.hidden_act = parse_act(cfg<std::string>(k, "hidden_act", "gelu"));
    return std::make_unique<BertModelCase>(loaded(std::make_unique<nn::BertModel>(b)));
  }
  throw InvalidArgument("golden: unknown case kind '" + c.kind + "'");
}

std::map<std::string, Tensor> load_inputs(const Case& c, const SafetensorsFile& f, const Device& device, DType dtype) {
  std::map<std::string, Tensor> in;
  for (const auto& name : c.inputs) {
    Tensor t = f.load(name, device);
    in[name] = is_floating(t.dtype()) ? t.to(dtype) : t;
  }
  return in;
}

Result compare(const Case& c, const SafetensorsFile& f, const std::map<std::string, Tensor>& inputs,
               const std::map<std::string, Tensor>& outputs, DType dtype) {
  Result r;
  r.name = c.name;
  const double atol = dtype == DType::float32 ? 1e-4 : dtype == DType::float16 ? 2e-2 : 5e-2;
  const double rtol = atol;
  r.pass = true;
  for (const auto& name : c.outputs) {
    auto it = outputs.find(name);
    if (it == outputs.end()) {
      r.pass = false;
      r.detail = "no output '" + name + "'";
      return r;
    }
    std::vector<float> ref = f.load(name, Device(DeviceKind::cpu)).to_vector<float>();
    std::vector<float> out = it->second.to_float_vector();
    if (ref.size() != out.size()) {
      r.pass = false;
      r.detail = name + ": " + std::to_string(out.size()) + " values, the reference has " + std::to_string(ref.size());
      return r;
    }
    // Rows of padded positions are zeroed in both (the README's rule for masked outputs).
    std::vector<std::uint8_t> padded_row;
    std::int64_t row = it->second.size(-1);
    if (name == "output_masked" && inputs.count("key_padding_mask")) {
      padded_row = inputs.at("key_padding_mask").to(DType::uint8).to_vector<std::uint8_t>();
    } else if (name == "last_hidden_state" && inputs.count("attention_mask")) {
      for (auto v : inputs.at("attention_mask").to(DType::int64).to_vector<std::int64_t>()) padded_row.push_back(v == 0);
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (!padded_row.empty() && padded_row[i / static_cast<std::size_t>(row)]) continue;
      const double o = out[i], e = ref[i], err = std::abs(o - e);
      if (std::isnan(o) || err > atol + rtol * std::abs(e)) {
        if (r.pass) r.detail = name + "[" + std::to_string(i) + "] = " + std::to_string(o) + ", expected " + std::to_string(e);
        r.pass = false;
      }
      if (!std::isnan(err)) {
        r.max_abs = std::max(r.max_abs, err);
        r.max_rel = std::max(r.max_rel, err / std::max(std::abs(e), 1e-6));
      } else {
        r.max_abs = INFINITY;
      }
    }
  }
  return r;
}

Result run_case(const std::string& dir, const Case& c, const Device& device, DType dtype) {
  try {
    SafetensorsFile f = SafetensorsFile::open(dir + "/" + c.file);
    auto model = build(c, f, device, dtype);
    auto inputs = load_inputs(c, f, device, dtype);
    auto outputs = model->run(inputs);
    return compare(c, f, inputs, outputs, dtype);
  } catch (const std::exception& e) {
    Result r;
    r.name = c.name;
    r.pass = false;
    r.detail = e.what();
    return r;
  }
}

}  // namespace streampool::golden
