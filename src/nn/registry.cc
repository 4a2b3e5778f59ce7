// make_module: the module kinds by name, each with its fields (streampool/nn/registry.h).

#include "streampool/nn/registry.h"

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "streampool/error.h"
#include "streampool/nn/bert.h"
#include "streampool/nn/layers.h"
#include "streampool/nn/transformer.h"

namespace streampool::nn {
namespace {

using nlohmann::json;

// Reads one module's fields: each read names the field, and fields nobody read are refused
// (a misspelt "bias" must not silently become the default).
class Fields {
 public:
  Fields(std::string kind, const json& j) : kind_(std::move(kind)), j_(j) {
    if (!j_.is_object()) fail("the configuration must be a JSON object, got " + j_.dump());
  }
  template <typename T>
  T get(const char* key) {
    if (!j_.contains(key) || j_[key].is_null()) fail("'" + std::string(key) + "' is missing");
    return read<T>(key);
  }
  template <typename T>
  T get(const char* key, T fallback) {
    if (!j_.contains(key) || j_[key].is_null()) {
      used_.insert(key);
      return fallback;
    }
    return read<T>(key);
  }
  const json& raw(const char* key) {
    if (!j_.contains(key)) fail("'" + std::string(key) + "' is missing");
    used_.insert(key);
    return j_[key];
  }
  void done() {
    for (const auto& [key, value] : j_.items()) {
      if (key != "kind" && !used_.count(key)) fail("unknown field '" + key + "'");
    }
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw InvalidArgument("make_module(" + kind_ + "): " + why);
  }

 private:
  template <typename T>
  T read(const char* key) {
    used_.insert(key);
    try {
      return j_[key].get<T>();
    } catch (const json::exception&) {
      fail("'" + std::string(key) + "' has the wrong type: " + j_[key].dump());
    }
  }

  std::string kind_;
  const json& j_;
  std::set<std::string> used_;
};

std::int64_t positive(Fields& f, const char* key) {
  const auto v = f.get<std::int64_t>(key);
  if (v <= 0) f.fail("'" + std::string(key) + "' must be positive, got " + std::to_string(v));
  return v;
}

std::unique_ptr<Module> build(const std::string& kind, const json& config);

using Builder = std::function<std::unique_ptr<Module>(Fields&)>;

const std::vector<std::pair<std::string, Builder>>& builders() {
  static const auto* table = new std::vector<std::pair<std::string, Builder>>{
      {"linear",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto in = positive(f, "in_features"), out = positive(f, "out_features");
         return std::make_unique<Linear>(in, out, f.get<bool>("bias", true));
       }},
      {"layer_norm",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto n = positive(f, "normalized_shape");
         return std::make_unique<LayerNorm>(n, f.get<double>("eps", 1e-5));
       }},
      {"conv1d",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto in = positive(f, "in_channels"), out = positive(f, "out_channels"), k = positive(f, "kernel_size");
         const int stride = f.get<int>("stride", 1), padding = f.get<int>("padding", 0);
         if (stride < 1 || padding < 0) f.fail("stride must be >= 1 and padding >= 0");
         return std::make_unique<Conv1d>(in, out, k, stride, padding, f.get<bool>("bias", true));
       }},
      {"relu", [](Fields&) -> std::unique_ptr<Module> { return std::make_unique<ActivationLayer>(Activation::relu); }},
      {"silu", [](Fields&) -> std::unique_ptr<Module> { return std::make_unique<ActivationLayer>(Activation::silu); }},
      {"tanh", [](Fields&) -> std::unique_ptr<Module> { return std::make_unique<ActivationLayer>(Activation::tanh); }},
      {"gelu",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto a = f.get<std::string>("approximate", "none");
         if (a != "none" && a != "tanh") f.fail("'approximate' must be \"none\" or \"tanh\", got \"" + a + "\"");
         return std::make_unique<ActivationLayer>(a == "tanh" ? Activation::gelu_tanh : Activation::gelu);
       }},
      {"sequential",
       [](Fields& f) -> std::unique_ptr<Module> {
         const json& layers = f.raw("layers");
         if (!layers.is_array()) f.fail("'layers' must be an array");
         auto seq = std::make_unique<Sequential>();
         for (const auto& l : layers) {
           if (!l.is_object() || !l.contains("kind") || !l["kind"].is_string()) {
             f.fail("each layer must be an object with a \"kind\", got " + l.dump());
           }
           seq->add(build(l["kind"].get<std::string>(), l));
         }
         return seq;
       }},
      {"mlp",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto sizes = f.get<std::vector<std::int64_t>>("sizes");
         for (auto v : sizes)
           if (v <= 0) f.fail("'sizes' must be positive");
         const Activation act = parse_activation(f.get<std::string>("activation", "relu"));
         return make_mlp(sizes, act);
       }},
      {"multihead_attention",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto e = positive(f, "embed_dim"), h = positive(f, "num_heads");
         const bool bias = f.get<bool>("bias", true), bf = f.get<bool>("batch_first", false);
         return std::make_unique<MultiheadAttention>(e, h, bias, bf);
       }},
      {"transformer_encoder_layer",
       [](Fields& f) -> std::unique_ptr<Module> {
         const auto d = positive(f, "d_model"), h = positive(f, "nhead");
         const auto ff = f.get<std::int64_t>("dim_feedforward", 2048);
         if (ff <= 0) f.fail("'dim_feedforward' must be positive");
         const Activation act = parse_activation(f.get<std::string>("activation", "relu"));
         const bool nf = f.get<bool>("norm_first", false), bf = f.get<bool>("batch_first", false);
         const double eps = f.get<double>("layer_norm_eps", 1e-5);
         if (f.get<double>("dropout", 0.0) != 0.0) f.fail("'dropout' must be 0 (inference only)");
         return std::make_unique<TransformerEncoderLayer>(d, h, ff, act, nf, eps, bf);
       }},
      {"bert",
       [](Fields& f) -> std::unique_ptr<Module> {
         BertConfig b;
         b.vocab_size = positive(f, "vocab_size");
         b.hidden_size = positive(f, "hidden_size");
         b.num_hidden_layers = positive(f, "num_hidden_layers");
         b.num_attention_heads = positive(f, "num_attention_heads");
         b.intermediate_size = positive(f, "intermediate_size");
         b.max_position_embeddings = f.get<std::int64_t>("max_position_embeddings", 512);
         b.type_vocab_size = f.get<std::int64_t>("type_vocab_size", 2);
         if (b.max_position_embeddings <= 0 || b.type_vocab_size <= 0) {
           f.fail("'max_position_embeddings' and 'type_vocab_size' must be positive");
         }
         b.layer_norm_eps = f.get<double>("layer_norm_eps", 1e-12);
         b.hidden_act = parse_activation(f.get<std::string>("hidden_act", "gelu"));
         return std::make_unique<BertModel>(b);
       }},
  };
  return *table;
}

std::unique_ptr<Module> build(const std::string& kind, const json& config) {
  for (const auto& [name, make] : builders()) {
    if (name != kind) continue;
    Fields f(kind, config);
    auto m = make(f);
    f.done();
    return m;
  }
  std::string known;
  for (const auto& k : module_kinds()) known += (known.empty() ? "" : ", ") + k;
  throw InvalidArgument("make_module: unknown kind '" + kind + "' (known: " + known + ")");
}

}  // namespace

Activation parse_activation(std::string_view s) {
  if (s == "relu") return Activation::relu;
  if (s == "gelu") return Activation::gelu;
  if (s == "gelu_tanh" || s == "gelu_new" || s == "gelu_pytorch_tanh") return Activation::gelu_tanh;
  if (s == "silu" || s == "swish") return Activation::silu;
  if (s == "tanh") return Activation::tanh;
  throw InvalidArgument("unknown activation '" + std::string(s) + "' (relu, gelu, gelu_tanh, silu, tanh)");
}

const std::vector<std::string>& module_kinds() {
  static const auto* kinds = [] {
    auto* v = new std::vector<std::string>;
    for (const auto& [name, make] : builders()) v->push_back(name);
    return v;
  }();
  return *kinds;
}

std::unique_ptr<Module> make_module(std::string_view kind, std::string_view config) {
  json j;
  try {
    j = json::parse(config.empty() ? std::string_view("{}") : config);
  } catch (const json::exception& e) {
    throw InvalidArgument("make_module(" + std::string(kind) + "): the configuration is not valid JSON: " + e.what());
  }
  return build(std::string(kind), j);
}

}  // namespace streampool::nn
