#include "streampool/nn/module.h"

#include <set>
#include <sstream>

#include "streampool/error.h"
#include "streampool/safetensors.h"
#include "streampool/stream_pool.h"

namespace streampool::nn {

// Visits every parameter of `self` and its children, depth first, with its full name. One walk
// for reading (const Module) and loading (Module): no const_cast.
template <typename Self, typename F>
void Module::walk(Self& self, const std::string& prefix, F&& f) {
  for (auto& p : self.params_) f(prefix + p.name, p);
  for (auto& [child_prefix, child] : self.children_) {
    if constexpr (std::is_const_v<Self>) {
      walk(static_cast<const Module&>(*child), prefix + child_prefix, f);
    } else {
      walk(*child, prefix + child_prefix, f);
    }
  }
}

int Module::register_parameter(std::string name, Shape shape) {
  params_.push_back({std::move(name), std::move(shape), Tensor()});
  return static_cast<int>(params_.size()) - 1;
}

void Module::register_module(std::string prefix, Module& child) { children_.emplace_back(std::move(prefix), &child); }

const Tensor& Module::param(int handle) const {
  static const Tensor none;
  if (handle < 0) return none;
  const Param& p = params_.at(static_cast<std::size_t>(handle));
  if (!p.value.defined()) {
    throw InvalidArgument(std::string(name_) + ": parameter '" + p.name + "' is not loaded (load_state_dict first)");
  }
  return p.value;
}

void Module::check_input(const Input& in, unsigned takes) const {
  if (!in.x.defined()) throw InvalidArgument(std::string(name_) + ": the input x is undefined");
  auto refuse = [&](const Tensor& t, const char* field, bool taken) {
    if (t.defined() && !taken) throw InvalidArgument(std::string(name_) + " takes no " + field + ", got " + t.str());
  };
  refuse(in.key_padding_mask, "key_padding_mask", takes & takes_key_padding_mask);
  refuse(in.attention_mask, "attention_mask", takes & takes_bert_fields);
  refuse(in.token_type_ids, "token_type_ids", takes & takes_bert_fields);
}

std::vector<std::pair<std::string, Shape>> Module::parameters() const {
  std::vector<std::pair<std::string, Shape>> out;
  walk(*this, "", [&](const std::string& name, const Param& p) { out.emplace_back(name, p.shape); });
  return out;
}

void Module::prepare_tree(Module& m, const Device& device) {
  for (auto& [prefix, child] : m.children_) prepare_tree(*child, device);
  m.prepare(device);
}

void Module::load_state_dict(const StateDict& state, const Device& device, DType dtype,
                             const std::vector<std::string>& ignore) {
  if (!is_floating(dtype)) throw InvalidArgument("load_state_dict: dtype must be float32, float16 or bfloat16");
  // Parameters are read-only once loaded: other threads may be running forward() on them.
  if (loaded_) {
    throw InvalidArgument("load_state_dict: " + std::string(name_) + " is already loaded (on " + device_.str() +
                          "); build a new module to load other weights");
  }
  check_device(device);
  std::vector<std::pair<std::string, Param*>> ps;
  walk(*this, "", [&](const std::string& name, Param& p) { ps.emplace_back(name, &p); });
  std::vector<std::string> missing, wrong, unexpected;
  std::set<std::string> known;
  for (const auto& [name, p] : ps) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end() || !it->second.defined()) {
      missing.push_back(name);
    } else if (it->second.shape() != p->shape) {
      wrong.push_back(name + " is " + shape_str(it->second.shape()) + ", expected " + shape_str(p->shape));
    } else if (!is_floating(it->second.dtype())) {
      wrong.push_back(name + " is " + std::string(dtype_name(it->second.dtype())) + ", expected a float type");
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
  for (const auto& [name, p] : ps) converted.push_back(state.at(name).to(device).to(dtype).contiguous());
  for (std::size_t i = 0; i < ps.size(); ++i) ps[i].second->value = std::move(converted[i]);
  try {
    prepare_tree(*this, device);
  } catch (...) {
    for (auto& [name, p] : ps) p->value = Tensor();
    throw;
  }
  // Every stream may read the weights from now on: wait for the copies (Note [Stream-ordered reuse]).
  current_stream(device).synchronize();
  loaded_ = true;
  device_ = device;
  dtype_ = dtype;
}

void Module::load_safetensors(const std::string& path, const Device& device, DType dtype) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::set<std::string> wanted;
  for (const auto& [name, shape] : parameters()) wanted.insert(name);
  StateDict state;
  for (const auto& e : f.entries()) {
    // Only what the module needs travels to the device; the rest is listed as unexpected.
    state[e.name] = wanted.count(e.name) ? f.load(e.name, Device(DeviceKind::cpu))
                                         : empty({0}, DType::float32, Device(DeviceKind::cpu));
  }
  load_state_dict(state, device, dtype);
}

}  // namespace streampool::nn
