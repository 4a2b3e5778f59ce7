#include "streampool/nn/module.h"

#include <set>
#include <sstream>

#include "streampool/error.h"
#include "streampool/safetensors.h"
#include "streampool/stream_pool.h"

namespace streampool::nn {

std::vector<std::pair<std::string, Shape>> Module::parameters() const {
  std::vector<Param> ps;
  const_cast<Module*>(this)->collect("", ps);  // collect only reads the configuration here
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& p : ps) out.emplace_back(p.name, p.shape);
  return out;
}

void Module::load_state_dict(const StateDict& state, const Device& device, DType dtype,
                             const std::vector<std::string>& ignore) {
  if (!is_floating(dtype)) throw InvalidArgument("load_state_dict: dtype must be float32, float16 or bfloat16");
  check_device(device);
  std::vector<Param> ps;
  collect("", ps);
  std::vector<std::string> missing, wrong, unexpected;
  std::set<std::string> known;
  for (const auto& p : ps) {
    known.insert(p.name);
    auto it = state.find(p.name);
    if (it == state.end() || !it->second.defined()) {
      missing.push_back(p.name);
    } else if (it->second.shape() != p.shape) {
      wrong.push_back(p.name + " is " + shape_str(it->second.shape()) + ", expected " + shape_str(p.shape));
    } else if (!is_floating(it->second.dtype())) {
      wrong.push_back(p.name + " is " + std::string(dtype_name(it->second.dtype())) + ", expected a float type");
    }
  }
  for (const auto& [name, t] : state) {
    if (known.count(name)) continue;
    bool skip = false;
    for (const auto& prefix : ignore) skip |= name.rfind(prefix, 0) == 0;
    if (!skip) unexpected.push_back(name);
  }
  if (!missing.empty() || !wrong.empty() || !unexpected.empty()) {
    std::ostringstream msg;
    msg << "load_state_dict: the state does not match the module";
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      msg << "; " << what << " (" << v.size() << "): ";
      for (std::size_t i = 0; i < v.size(); ++i) msg << (i ? ", " : "") << v[i];
    };
    list("missing", missing);
    list("wrong shape or dtype", wrong);
    list("unexpected", unexpected);
    throw InvalidArgument(msg.str());
  }
  // Convert everything first, then swap in: a failure leaves the module as it was.
  std::vector<Tensor> converted;
  for (const auto& p : ps) converted.push_back(state.at(p.name).to(device).to(dtype).contiguous());
  // Every stream may read the weights from now on: wait for the copies (Note [Stream-ordered reuse]).
  current_stream(device).synchronize();
  for (std::size_t i = 0; i < ps.size(); ++i) *ps[i].slot = std::move(converted[i]);
  loaded_ = true;
  device_ = device;
  dtype_ = dtype;
}

void Module::load_safetensors(const std::string& path, const Device& device, DType dtype) {
  SafetensorsFile f = SafetensorsFile::open(path);
  StateDict state;
  std::vector<Param> ps;
  collect("", ps);
  for (const auto& e : f.entries()) {
    // Only what the module needs travels to the device; the rest is listed as unexpected.
    bool wanted = false;
    for (const auto& p : ps) wanted |= p.name == e.name;
    state[e.name] = wanted ? f.load(e.name, Device(DeviceKind::cpu)) : empty({0}, DType::float32, Device(DeviceKind::cpu));
  }
  load_state_dict(state, device, dtype);
}

void Module::check_loaded(const char* op, const Tensor& param) {
  if (!param.defined()) throw InvalidArgument(std::string(op) + ": the module's parameters are not loaded (load_state_dict first)");
}

}  // namespace streampool::nn
