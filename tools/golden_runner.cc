#include "golden_runner.h"

#include <cmath>
#include <fstream>
#include <sstream>

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

namespace {

// PyTorch's own error on each case's output in each dtype: DIR/torch_error.json (PyTorch 2.11 on
// an H200, from ../shared/anchors/torch_own_error.py) for CUDA, DIR/torch_error_cpu.json (the
// same script on the CPU, float32) for the CPU: {"cases": {case: {output: {dtype: {"max_abs"}}}}}.
// Negative where the file or the entry is missing.
double torch_own_error(const std::string& file, const std::string& name, const std::string& output, DType dtype) {
  std::ifstream in(file);
  if (!in) return -1;
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError("golden: " + file + " is malformed: " + e.what());
  }
  const std::string dt(dtype_name(dtype));
  if (!j.is_object() || !j.contains("cases")) return -1;
  const json& cases = j["cases"];
  if (!cases.contains(name) || !cases[name].contains(output) || !cases[name][output].contains(dt)) return -1;
  return cases[name][output][dt].value("max_abs", -1.0);
}

// One unit in the last place of `x` in `dtype`.
double ulp(double x, DType dtype) {
  const int mantissa = dtype == DType::float32 ? 23 : dtype == DType::float16 ? 10 : 7;
  const double a = std::max(std::abs(x), dtype == DType::float16 ? 6.1e-5 : 1.2e-38);
  return std::ldexp(1.0, std::ilogb(a) - mantissa);
}

}  // namespace

Result compare(const Case& c, const SafetensorsFile& f, const std::map<std::string, Tensor>& inputs,
               const std::map<std::string, Tensor>& outputs, DType dtype, const std::string& dir, const Device& device) {
  const std::string own_file = dir + (device.kind == DeviceKind::cpu ? "/torch_error_cpu.json" : "/torch_error.json");
  Result r;
  r.name = c.name;
  r.pass = true;
  auto fail = [&](const std::string& why) {
    if (r.pass) r.detail = why;
    r.pass = false;
  };
  for (const auto& name : c.outputs) {
    auto it = outputs.find(name);
    if (it == outputs.end()) {
      fail("no output '" + name + "'");
      return r;
    }
    const Tensor& got = it->second;
    std::vector<float> ref = f.load(name, Device(DeviceKind::cpu)).to_vector<float>();
    std::vector<float> out = got.to_float_vector();
    if (ref.size() != out.size()) {
      fail(name + ": " + std::to_string(out.size()) + " values, the reference has " + std::to_string(ref.size()));
      return r;
    }
    // Padded positions (the README): the reference zeroes their rows, whatever the module put
    // there. Ours must be finite there; the rest is compared. The row of element i is its
    // (batch, position) in the output's own layout: (B, S, E) batch-first, else (S, B, E).
    std::vector<std::uint8_t> padded;  // (B, S), 1 = padded
    if (name == "output_masked" && inputs.count("key_padding_mask")) {
      padded = inputs.at("key_padding_mask").to(DType::uint8).to_vector<std::uint8_t>();
    } else if (name == "last_hidden_state" && inputs.count("attention_mask")) {
      for (auto v : inputs.at("attention_mask").to(DType::int64).to_vector<std::int64_t>()) padded.push_back(v == 0);
    }
    const bool batch_first = name == "last_hidden_state" || c.config.value("batch_first", false);
    const std::int64_t width = got.dim() ? got.size(-1) : 1;
    const std::int64_t seq = got.dim() >= 3 ? got.size(batch_first ? 1 : 0) : 1;
    const std::int64_t batch = got.dim() >= 3 ? got.size(batch_first ? 0 : 1) : 1;
    if (!padded.empty() && static_cast<std::int64_t>(padded.size()) != batch * seq) {
      fail(name + ": the mask has " + std::to_string(padded.size()) + " positions, the output " + std::to_string(batch * seq));
      return r;
    }
    auto is_padded = [&](std::size_t i) {
      if (padded.empty()) return false;
      const std::int64_t row = static_cast<std::int64_t>(i) / width;
      const std::int64_t b = batch_first ? row / seq : row % batch, s = batch_first ? row % seq : row / batch;
      return padded[static_cast<std::size_t>(b * seq + s)] != 0;
    };
    double max_abs = 0, max_rel = 0, max_ref = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const double o = out[i], e = ref[i];
      if (is_padded(i)) {
        if (!std::isfinite(o)) fail(name + "[" + std::to_string(i) + "] (a padded position) = " + std::to_string(o));
        if (e != 0) fail(name + "[" + std::to_string(i) + "]: the reference's padded row is not zeroed");
        continue;
      }
      // A non-finite reference must be matched exactly (NaN by NaN, an infinity by the same
      // one); a non-finite result where the reference is finite fails.
      if (!std::isfinite(e) || !std::isfinite(o)) {
        const bool same = (std::isnan(e) && std::isnan(o)) || (!std::isnan(e) && o == e);
        if (!same) {
          fail(name + "[" + std::to_string(i) + "] = " + std::to_string(o) + ", expected " + std::to_string(e));
          max_abs = INFINITY;
        }
        continue;
      }
      const double err = std::abs(o - e);
      max_abs = std::max(max_abs, err);
      max_rel = std::max(max_rel, err / std::max(std::abs(e), 1e-6));
      max_ref = std::max(max_ref, std::abs(e));
    }
    r.max_abs = std::max(r.max_abs, max_abs);
    r.max_rel = std::max(r.max_rel, max_rel);
    // The bound: 1.5x PyTorch's own error in this dtype, and never below a floor of what the
    // dtype can tell apart: 8 units in the last place of the output's largest value in float32
    // (OpenBLAS and PyTorch's CPU GEMM differ by 2-3x PyTorch's own error, 3.5-4.5 units, on the
    // MLP's two K = 1024 GEMMs), 1 unit in float16 / bfloat16 (their results are rounded to
    // that); the floor alone where PyTorch's error is zero (relu).
    const double own = torch_own_error(own_file, c.name, name, dtype);
    const int floor_ulps = dtype == DType::float32 ? 8 : 1;
    const double floor = floor_ulps * ulp(max_ref, dtype);
    double bound;
    if (own >= 0) {
      bound = std::max(1.5 * own, floor);
      if (own > 0) r.ratio = std::max(r.ratio, max_abs / own);
    } else {  // no figure of PyTorch's: the README's fixed tolerance
      bound = (dtype == DType::float32 ? 1e-4 : dtype == DType::float16 ? 2e-2 : 5e-2) * (1 + max_ref);
      r.ratio_known = false;
    }
    if (!(max_abs <= bound)) {
      std::ostringstream why;
      why << name << ": max_abs " << max_abs << " above " << bound;
      if (own > 0 && bound > floor) why << " (1.5x PyTorch's own " << own << " in " << dtype_name(dtype) << ")";
      else if (own >= 0) why << " (the floor of " << floor_ulps << " units in the last place of " << max_ref << ")";
      fail(why.str());
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
    return compare(c, f, inputs, outputs, dtype, dir, device);
  } catch (const std::exception& e) {
    Result r;
    r.name = c.name;
    r.pass = false;
    r.detail = e.what();
    return r;
  }
}

}  // namespace streampool::golden
