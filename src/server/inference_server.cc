// Loaded models and the protocol's operations on them (inference_server.h).

#include "server/inference_server.h"

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "streampool/interop.h"
#include "streampool/nn/registry.h"
#include "streampool/version.h"

namespace streampool::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad_request(const Model& m, const std::string& what) {
  throw InvalidArgument("model '" + m.config.name + "': " + what);
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<std::int64_t> with_any(std::vector<std::int64_t> shape, std::int64_t dim) {
  if (dim > 0 && dim < static_cast<std::int64_t>(shape.size())) shape[static_cast<std::size_t>(dim)] = -1;
  return shape;
}

// Input and output metadata from the module's InputSpec and one probe request.
void describe(Model& m, const nn::Module& module, const Device& device) {
  const nn::InputSpec spec = module.input_spec();
  m.ids = spec.ids;
  m.max_len = spec.max_len;
  const std::int64_t probe_len = spec.max_len > 0 ? std::min<std::int64_t>(8, spec.max_len) : 8;
  nn::Input in;
  if (spec.ids) {
    m.inputs = {{"input_ids", DType::int64, {-1, -1}, false},
                {"attention_mask", DType::int64, {-1, -1}, true},
                {"token_type_ids", DType::int64, {-1, -1}, true}};
    in.x = zeros({1, probe_len}, DType::int64, device);
  } else {
    std::vector<std::int64_t> shape{-1};
    if (!spec.dims.empty()) {
      shape.insert(shape.end(), spec.dims.begin(), spec.dims.end());
    } else if (spec.last_dim > 0) {
      shape.push_back(spec.last_dim);
    } else {
      throw ConfigError("model '" + m.config.name + "': module " + m.config.module +
                        " does not say what its input looks like, so it cannot be served");
    }
    shape = with_any(shape, spec.seq_dim);
    Shape probe(shape.begin(), shape.end());
    probe[0] = 1;
    for (auto& d : probe) {
      if (d < 0) d = probe_len;
    }
    m.inputs = {{"input", m.config.dtype, shape, false}};
    in.x = zeros(probe, m.config.dtype, device);
  }
  const nn::Output out = module.forward(in);
  auto out_shape = [&](const Tensor& t, bool seq) {
    std::vector<std::int64_t> s(t.shape().begin(), t.shape().end());
    s[0] = -1;
    return seq ? with_any(s, spec.seq_dim) : s;
  };
  if (spec.ids) {
    m.outputs = {{"last_hidden_state", out.y.dtype(), out_shape(out.y, true), false}};
    if (out.pooled.defined()) m.outputs.push_back({"pooler_output", out.pooled.dtype(), out_shape(out.pooled, false), false});
  } else {
    m.outputs = {{"output", out.y.dtype(), out_shape(out.y, true), false}};
  }
  current_stream(device).synchronize();
}

const TensorMetadata* find_meta(const std::vector<TensorMetadata>& v, const std::string& name) {
  for (const TensorMetadata& t : v) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string names(const std::vector<TensorMetadata>& v) {
  std::string out;
  for (const TensorMetadata& t : v) out += (out.empty() ? "" : ", ") + t.name;
  return out;
}

json tensor_json(const TensorMetadata& t) {
  return {{"name", t.name}, {"datatype", protocol_datatype(t.dtype)}, {"shape", t.shape}};
}

// Prometheus' text format allows one HELP and TYPE per metric family: the queues' texts are
// merged family by family (a histogram's _bucket, _sum and _count lines belong to it).
std::string merge_families(const std::vector<std::string>& texts) {
  std::vector<std::string> order;
  std::map<std::string, std::pair<std::string, std::string>> families;  // name -> (header lines, samples)
  auto family_of = [&](std::string name) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          families.count(name.substr(0, name.size() - s.size()))) {
        return name.substr(0, name.size() - s.size());
      }
    }
    return name;
  };
  for (const std::string& text : texts) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line.rfind("# ", 0) == 0) {
        std::istringstream words(line.substr(2));
        std::string kind, name;
        words >> kind >> name;
        if (!families.count(name)) {
          order.push_back(name);
          families[name];
        }
        auto& header = families[name].first;
        if (header.find("# " + kind + " ") == std::string::npos) header += line + "\n";
        continue;
      }
      const std::string name = family_of(line.substr(0, line.find_first_of("{ ")));
      if (!families.count(name)) {
        order.push_back(name);
        families[name];
      }
      families[name].second += line + "\n";
    }
  }
  std::string out;
  for (const std::string& name : order) out += families[name].first + families[name].second;
  return out;
}

}  // namespace

InferenceServer::InferenceServer(const std::string& repository, const ServerOptions& options) {
  for (ModelConfig& cfg : read_model_repository(repository)) {
    auto m = std::make_unique<Model>();
    m->config = std::move(cfg);
    const ModelConfig& c = m->config;
    std::vector<Device> devices = options.devices;
    if (devices.empty()) devices.push_back(c.device.value_or(Device(DeviceKind::cpu, 0)));
    std::vector<Replica> replicas;
    try {
      for (const Device& d : devices) {
        std::shared_ptr<nn::Module> module = nn::make_module(c.module, c.module_config);
        module->load_safetensors(c.weights, d, c.dtype);
        replicas.push_back({module, nullptr, options.workers});
      }
      describe(*m, *replicas.front().module, devices.front());
    } catch (const Error& e) {
      throw ConfigError("model '" + c.name + "' (" + c.dir + "): " + e.what());
    }
    BatchOptions b = c.batching;
    b.output_device = Device(DeviceKind::cpu, 0);  // responses are written from host memory
    m->queue = std::make_unique<BatchQueue>(std::move(replicas), b);
    models_.push_back(std::move(m));
  }
  ready_.store(true);
}

InferenceServer::~InferenceServer() { close(); }

void InferenceServer::close() {
  ready_.store(false);
  for (auto& m : models_) m->queue->close();
}

std::string InferenceServer::server_metadata() const {
  return json{{"name", "streampool"},
              {"version", STREAMPOOL_VERSION},
              {"extensions", {"binary_tensor_data", "model_repository_metadata"}}}
      .dump();
}

const Model& InferenceServer::model(std::string_view name, std::string_view version) const {
  for (const auto& m : models_) {
    if (m->config.name != name) continue;
    if (!version.empty() && m->config.version != version) {
      throw NotFoundError("model '" + std::string(name) + "' has no version '" + std::string(version) + "' (it has '" +
                          m->config.version + "')");
    }
    return *m;
  }
  throw NotFoundError("no model named '" + std::string(name) + "'");
}

std::string InferenceServer::model_metadata(const Model& m) const {
  json j{{"name", m.config.name}, {"versions", {m.config.version}}, {"platform", "streampool_" + m.config.module}};
  j["inputs"] = json::array();
  for (const TensorMetadata& t : m.inputs) {
    json o = tensor_json(t);
    if (t.optional) o["parameters"] = {{"optional", true}};
    j["inputs"].push_back(o);
  }
  j["outputs"] = json::array();
  for (const TensorMetadata& t : m.outputs) j["outputs"].push_back(tensor_json(t));
  return j.dump();
}

namespace {

// Note [Server hand-offs]
// A request's bytes become its input tensor without a copy and without stream work (the tensor
// views the request's own buffer, which it keeps alive), and a result is read on the calling
// thread straight from the host memory the queue completed. The alternative, from_host() and
// copy_to_host() through the I/O thread's CPU stream, hands every request to that stream's
// worker thread and back twice; with hundreds of client threads competing for the cores those
// hand-offs, not the GPU, bounded the server (a third of the in-process throughput for
// bert-minilm, 3% for mlp, on an H200 machine's 16 cores).

// The elements of a complete host tensor, row-major, into `dst`: its innermost contiguous run
// at a time (a padded request's rows of a batch output are a strided view).
void read_host(const Tensor& t, char* dst) {
  const std::size_t es = dtype_size(t.dtype());
  const Shape& shape = t.shape();
  const Shape& st = t.strides();
  auto inner = static_cast<std::size_t>(t.dim());
  std::int64_t run = 1;
  while (inner > 0 && (shape[inner - 1] == 1 || st[inner - 1] == run)) run *= shape[--inner];
  std::int64_t outer = 1;
  for (std::size_t d = 0; d < inner; ++d) outer *= shape[d];
  const char* base = static_cast<const char*>(t.data_ptr());
  const std::size_t run_bytes = static_cast<std::size_t>(run) * es;
  std::vector<std::int64_t> idx(inner, 0);
  for (std::int64_t k = 0; k < outer; ++k) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < inner; ++d) off += idx[d] * st[d];
    std::memcpy(dst, base + off * static_cast<std::int64_t>(es), run_bytes);
    dst += run_bytes;
    for (std::size_t d = inner; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

BatchFuture InferenceServer::submit(const Model& m, InferRequest& req) const {
  try {
    nn::Input in;
    Shape first_shape;
    for (RequestTensor& t : req.inputs) {
      const TensorMetadata* meta = find_meta(m.inputs, t.name);
      if (!meta) bad_request(m, "it has no input '" + t.name + "' (its inputs: " + names(m.inputs) + ")");
      if (t.dtype != meta->dtype) {
        bad_request(m, "input '" + t.name + "' is " + protocol_datatype(t.dtype) + ", the model takes " +
                           protocol_datatype(meta->dtype));
      }
      const std::vector<std::int64_t> shape(t.shape.begin(), t.shape.end());
      bool fits = shape.size() == meta->shape.size() && !shape.empty() && shape[0] >= 1;
      for (std::size_t i = 1; fits && i < shape.size(); ++i) {
        fits = meta->shape[i] < 0 ? shape[i] >= 1 : shape[i] == meta->shape[i];
      }
      if (!fits) {
        bad_request(m, "input '" + t.name + "' has shape " + shape_text(shape) + ", the model takes " +
                           shape_text(meta->shape) + " (-1: any size from 1)");
      }
      if (m.max_len > 0 && shape.size() > 1 && shape[1] > m.max_len) {
        bad_request(m, "input '" + t.name + "' is " + std::to_string(shape[1]) + " long, the model takes at most " +
                           std::to_string(m.max_len));
      }
      if (!first_shape.empty() && m.ids && t.shape != first_shape) {
        bad_request(m, "input '" + t.name + "' has shape " + shape_text(shape) + ", unlike the other inputs");
      }
      first_shape = t.shape;
      // Note [Server hand-offs]: the tensor views the request's bytes, moved into its owner.
      auto bytes = std::make_shared<std::string>(std::move(t.data));
      t.data.clear();
      Tensor x = from_external(bytes->data(), t.shape, {}, t.dtype, Device(DeviceKind::cpu, 0), bytes);
      if (t.name == "attention_mask") in.attention_mask = std::move(x);
      else if (t.name == "token_type_ids") in.token_type_ids = std::move(x);
      else in.x = std::move(x);
    }
    for (const TensorMetadata& meta : m.inputs) {
      if (meta.optional) continue;
      bool given = false;
      for (const RequestTensor& t : req.inputs) given |= t.name == meta.name;
      if (!given) bad_request(m, "input '" + meta.name + "' is missing");
    }
    for (const RequestedOutput& o : req.outputs) {
      if (!find_meta(m.outputs, o.name)) {
        bad_request(m, "it has no output '" + o.name + "' (its outputs: " + names(m.outputs) + ")");
      }
    }
    SubmitOptions so;
    so.priority = req.priority;
    if (req.timeout_us && *req.timeout_us > 0) so.timeout = std::chrono::microseconds(*req.timeout_us);
    return m.queue->submit(std::move(in), so);
  } catch (...) {
    m.failure.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
}

InferResponse InferenceServer::respond(const Model& m, const InferRequest& req, const BatchFuture& future) const {
  try {
    const nn::Output out = future.get();
    InferResponse r;
    r.model_name = m.config.name;
    r.model_version = m.config.version;
    r.id = req.id;
    auto add = [&](const std::string& name, bool binary) {
      const Tensor& t = name == "pooler_output" ? out.pooled : out.y;
      ResponseTensor rt;
      rt.name = name;
      rt.dtype = t.dtype();
      rt.shape = t.shape();
      rt.binary = binary || req.binary_data_output;
      rt.data.resize(t.nbytes());
      if (t.device().kind == DeviceKind::cpu) {
        read_host(t, rt.data.data());  // complete once get() returned (Note [Server hand-offs])
      } else {
        t.contiguous().copy_to_host(rt.data.data(), rt.data.size());
      }
      r.outputs.push_back(std::move(rt));
    };
    if (req.outputs.empty()) {
      for (const TensorMetadata& o : m.outputs) add(o.name, false);
    } else {
      for (const RequestedOutput& o : req.outputs) add(o.name, o.binary);
    }
    m.success.fetch_add(1, std::memory_order_relaxed);
    return r;
  } catch (...) {
    m.failure.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
}

std::string InferenceServer::metrics_text() const {
  std::ostringstream o;
  o << "# HELP streampool_inference_request_success_total Inference requests answered with a result.\n"
       "# TYPE streampool_inference_request_success_total counter\n";
  for (const auto& m : models_) {
    o << "streampool_inference_request_success_total{model=\"" << m->config.name << "\",version=\""
      << m->config.version << "\"} " << m->success.load() << "\n";
  }
  o << "# HELP streampool_inference_request_failure_total Inference requests answered with an error.\n"
       "# TYPE streampool_inference_request_failure_total counter\n";
  for (const auto& m : models_) {
    o << "streampool_inference_request_failure_total{model=\"" << m->config.name << "\",version=\""
      << m->config.version << "\"} " << m->failure.load() << "\n";
  }
  std::vector<std::string> texts{o.str()};
  for (const auto& m : models_) texts.push_back(m->queue->metrics_text());
  return merge_families(texts);
}

}  // namespace streampool::server
