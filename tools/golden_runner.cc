#include "golden_runner.h"

#include <cmath>
#include <fstream>

#include "streampool/error.h"
#include "streampool/nn/registry.h"
#include "streampool/ops.h"

namespace streampool::golden {

namespace {

using nlohmann::json;

nn::StateDict params_of(const Case& c, const SafetensorsFile& f) {
  nn::StateDict sd;
  for (const auto& p : c.params) sd[p] = f.load(p, Device(DeviceKind::cpu));
  return sd;
}

// A module built by the nn registry from the case's kind and config, called in the one module
// call form. The case's inputs fill the Input by name; "output_masked" is the same module run
// again with the key padding mask.
class ModuleCase : public Model {
 public:
  explicit ModuleCase(std::unique_ptr<nn::Module> m) : m_(std::move(m)) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    auto get = [&](const char* n) { return in.count(n) ? in.at(n) : Tensor(); };
    nn::Input x(in.count("input_ids") ? in.at("input_ids") : in.at("input"));
    x.attention_mask = get("attention_mask");
    x.token_type_ids = get("token_type_ids");
    nn::Output o = m_->forward(x);
    std::map<std::string, Tensor> out;
    if (in.count("input_ids")) {
      out["last_hidden_state"] = o.y;
      out["pooler_output"] = o.pooled;
    } else {
      out["output"] = o.y;
    }
    if (in.count("key_padding_mask")) {
      x.key_padding_mask = in.at("key_padding_mask");
      out["output_masked"] = m_->forward(x).y;
    }
    return out;
  }

 private:
  std::unique_ptr<nn::Module> m_;
};

// Op cases: the functional ops on the case's inputs, no module.
class ActivationsCase : public Model {
 public:
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    const Tensor& x = in.at("input");
    return {{"gelu_erf", gelu(x)}, {"gelu_tanh", gelu(x, true)}, {"relu", relu(x)}, {"softmax", softmax(x)},
            {"silu", silu(x)}};
  }
};

class SdpaCase : public Model {
 public:
  explicit SdpaCase(std::optional<double> scale) : scale_(scale) {}
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& in) const override {
    const Tensor &q = in.at("q"), &k = in.at("k"), &v = in.at("v");
    return {{"output", scaled_dot_product_attention(q, k, v, Tensor(), false, scale_)},
            {"output_causal", scaled_dot_product_attention(q, k, v, Tensor(), true, scale_)}};
  }

 private:
  std::optional<double> scale_;
};

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
  if (c.kind == "activations") {
    if (k.value("softmax_dim", -1) != -1) throw InvalidArgument("golden: softmax over a dimension other than the last");
    return std::make_unique<ActivationsCase>();
  }
  if (c.kind == "sdpa") {
    std::optional<double> scale;
    if (k.contains("scale") && !k["scale"].is_null()) scale = k["scale"].get<double>();
    return std::make_unique<SdpaCase>(scale);
  }
  auto m = nn::make_module(c.kind, k.dump());
  m->load_state_dict(params_of(c, f), device, dtype);
  return std::make_unique<ModuleCase>(std::move(m));
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
