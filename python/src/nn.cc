// Modules, compile() and the BatchQueue in Python, called like PyTorch modules.

#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"

namespace streampool::python {
namespace {

// Anything that is not a streampool Tensor: a zero-copy view where it speaks DLPack (PyTorch,
// NumPy), else a copy through numpy.asarray; then on `device` where one is given.
Tensor as_tensor(const py::object& obj, const std::optional<Device>& device) {
  Tensor t;
  if (py::isinstance<Tensor>(obj)) {
    t = obj.cast<Tensor>();
  } else if (py::hasattr(obj, "__dlpack__")) {
    t = from_dlpack(obj);
  } else {
    t = tensor_from_numpy(obj, py::none(), py::none());
  }
  if (device && t.device() != *device) {
    NoGil release;
    t = t.to(*device);
  }
  return t;
}

nn::Input make_input(const py::object& x, const py::object& key_padding_mask, const py::object& attention_mask,
                     const py::object& token_type_ids, const std::optional<Device>& device) {
  nn::Input in;
  in.x = as_tensor(x, device);
  if (!key_padding_mask.is_none()) in.key_padding_mask = as_tensor(key_padding_mask, device);
  if (!attention_mask.is_none()) in.attention_mask = as_tensor(attention_mask, device);
  if (!token_type_ids.is_none()) in.token_type_ids = as_tensor(token_type_ids, device);
  return in;
}

// A Tensor, or (last_hidden_state, pooler_output) for BertModel.
py::object output(const nn::Output& out) {
  if (out.pooled.defined()) return py::make_tuple(out.y, out.pooled);
  return py::cast(out.y);
}

// A module or a compiled module called from Python: inputs gathered with the GIL, the forward
// run without it. With `synchronize`, the calling thread's stream is synchronized in the same
// release: a request then gives up and retakes the GIL once, not twice (model(x) followed by
// stream.synchronize()), which is what lets many Python threads keep up with C++ ones.
template <typename Model>
py::object call(const Model& model, const Device& device, const py::object& x, const py::object& kpm,
                const py::object& am, const py::object& tt, bool synchronize) {
  nn::Input in = make_input(x, kpm, am, tt, device);
  nn::Output out;
  {
    NoGil release;
    out = model.forward(in);
    if (synchronize) current_stream(device).synchronize();
  }
  return output(out);
}

std::chrono::microseconds micros(double seconds, const char* what) {
  if (!(seconds >= 0)) throw InvalidArgument(std::string(what) + " must be a number of seconds >= 0");
  // Past int64's microseconds (or infinity): the longest there is, which the queue reads as none.
  if (seconds * 1e6 >= 9.2e18) return std::chrono::microseconds::max();
  return std::chrono::microseconds(static_cast<std::int64_t>(seconds * 1e6));
}

SubmitOptions submit_options(int priority, const py::object& timeout) {
  SubmitOptions so;
  so.priority = priority;
  if (!timeout.is_none()) so.timeout = micros(timeout.cast<double>(), "timeout");
  return so;
}

}  // namespace

void register_nn(py::module_& m) {
  using ModulePtr = std::shared_ptr<nn::Module>;
  py::class_<nn::Module, ModulePtr>(m, "Module", "A streampool module (nn.make builds one by kind and fields).")
      .def_property_readonly("name", [](const nn::Module& mod) { return std::string(mod.name()); })
      .def_property_readonly("device", &nn::Module::device)
      .def_property_readonly("dtype", [](const nn::Module& mod) { return std::string(dtype_name(mod.dtype())); })
      .def_property_readonly("loaded", &nn::Module::loaded)
      .def("parameters", [](const nn::Module& mod) {
        py::list out;
        for (auto& [name, shape] : mod.parameters()) out.append(py::make_tuple(name, py::tuple(py::cast(shape))));
        return out;
      })
      .def("load_safetensors", [](nn::Module& mod, const std::string& path, const py::object& device, const py::object& dtype) {
        const Device d = device_from_py(device);
        const DType dt = dtype_from_py(dtype);
        NoGil release;
        mod.load_safetensors(path, d, dt);
      }, py::arg("path"), py::arg("device") = "cpu", py::arg("dtype") = "float32")
      .def("load_state_dict", [](nn::Module& mod, const py::dict& state, const py::object& device, const py::object& dtype,
                                 const std::vector<std::string>& ignore) {
        const Device d = device_from_py(device);
        const DType dt = dtype_from_py(dtype);
        nn::StateDict sd;
        for (auto [k, v] : state) sd[k.cast<std::string>()] = as_tensor(py::reinterpret_borrow<py::object>(v), std::nullopt);
        NoGil release;
        mod.load_state_dict(sd, d, dt, ignore);
      }, py::arg("state_dict"), py::arg("device") = "cpu", py::arg("dtype") = "float32",
         py::arg("ignore") = std::vector<std::string>{})
      .def("__call__", [](const nn::Module& mod, const py::object& x, const py::object& kpm, const py::object& am,
                          const py::object& tt, bool sync) { return call(mod, mod.device(), x, kpm, am, tt, sync); },
         py::arg("x"), py::arg("key_padding_mask") = py::none(), py::arg("attention_mask") = py::none(),
         py::arg("token_type_ids") = py::none(), py::kw_only(), py::arg("synchronize") = false)
      .def("__repr__", [](const nn::Module& mod) {
        return "<streampool.nn." + std::string(mod.name()) + " on " + mod.device().str() + ", " +
               std::string(dtype_name(mod.dtype())) + (mod.loaded() ? "" : ", not loaded") + ">";
      });

  m.def("_make_module", [](const std::string& kind, const std::string& config) {
    return ModulePtr(nn::make_module(kind, config));
  }, py::arg("kind"), py::arg("config"));
  m.def("module_kinds", [] { return nn::module_kinds(); });

  py::class_<CompiledModule, std::shared_ptr<CompiledModule>>(m, "CompiledModule",
                                                               "A module replayed as a captured graph (one capture per input signature and stream).")
      .def("__call__", [](const CompiledModule& c, const py::object& x, const py::object& kpm, const py::object& am,
                          const py::object& tt, bool sync) { return call(c, c.module().device(), x, kpm, am, tt, sync); },
         py::arg("x"), py::arg("key_padding_mask") = py::none(), py::arg("attention_mask") = py::none(),
         py::arg("token_type_ids") = py::none(), py::kw_only(), py::arg("synchronize") = false)
      .def("stats", [](const CompiledModule& c) {
        const GraphStats s = c.stats();
        py::dict d;
        d["instances"] = s.instances;
        d["captures"] = s.captures;
        d["evictions"] = s.evictions;
        d["kernels_per_call"] = s.kernels_per_call;
        d["copies_per_call"] = s.copies_per_call;
        return d;
      })
      .def("clear", &CompiledModule::clear, nogil());
  m.def("compile", [](const ModulePtr& module, const std::optional<std::string>& mode, std::optional<int> cache_size,
                      bool batch_buckets, std::int64_t max_bucket) {
    GraphOptions o;
    if (mode) o.mode = parse_graph_mode(*mode);
    o.cache_size = cache_size;
    o.batch_buckets = batch_buckets;
    o.max_bucket = max_bucket;
    return compile(module, o);
  }, py::arg("module"), py::arg("mode") = py::none(), py::arg("cache_size") = py::none(), py::arg("batch_buckets") = false,
     py::arg("max_bucket") = 1024);

  // A BatchQueue request, wrapped by streampool.Future on the Python side.
  py::class_<BatchFuture>(m, "_Request")
      .def("ready", &BatchFuture::ready)
      .def("status", [](const BatchFuture& f) { return std::string(to_string(f.status())); })
      .def("cancel", &BatchFuture::cancel)
      .def("get", [](const BatchFuture& f) {
        nn::Output out;
        {
          NoGil release;
          out = f.get();
        }
        return output(out);
      })
      // On completion (any thread), the token goes to the completion thread (Note [Python threads]).
      .def("_watch", [](const BatchFuture& f, std::uint64_t token) {
        f.on_ready([token] { push_completion({nullptr, nullptr, token}); });
      });

  py::class_<BatchQueue, std::shared_ptr<BatchQueue>>(m, "_BatchQueue")
      .def(py::init([](const py::object& model, std::int64_t max_batch_size, double max_delay, int num_workers,
                       std::size_t max_queue, const std::string& full_policy, double full_timeout, double default_timeout,
                       const std::vector<std::int64_t>& length_buckets, const py::object& output_device, int pipeline_depth,
                       bool graph, const std::string& name) {
             BatchOptions o;
             o.max_batch_size = max_batch_size;
             o.max_delay = micros(max_delay, "max_delay");
             o.num_workers = num_workers;
             o.max_queue = max_queue;
             if (full_policy == "block") {
               o.full_policy = FullPolicy::block;
             } else if (full_policy == "reject") {
               o.full_policy = FullPolicy::reject;
             } else {
               throw InvalidArgument("BatchQueue: full_policy '" + full_policy + "' is not 'block' or 'reject'");
             }
             o.full_timeout = micros(full_timeout, "full_timeout");
             o.default_timeout = micros(default_timeout, "default_timeout");
             o.length_buckets = length_buckets;
             if (!output_device.is_none()) o.output_device = device_from_py(output_device);
             o.pipeline_depth = pipeline_depth;
             o.graph = graph;
             o.name = name;
             if (py::isinstance<CompiledModule>(model)) return std::make_shared<BatchQueue>(model.cast<std::shared_ptr<CompiledModule>>(), o);
             return std::make_shared<BatchQueue>(std::shared_ptr<const nn::Module>(model.cast<ModulePtr>()), o);
           }),
           py::arg("model"), py::arg("max_batch_size") = 64, py::arg("max_delay") = 0.0, py::arg("num_workers") = 1,
           py::arg("max_queue") = 0, py::arg("full_policy") = "block", py::arg("full_timeout") = 0.0,
           py::arg("default_timeout") = 0.0, py::arg("length_buckets") = std::vector<std::int64_t>{},
           py::arg("output_device") = py::none(), py::arg("pipeline_depth") = 2, py::arg("graph") = false,
           py::arg("name") = "default")
      .def("_submit", [](BatchQueue& q, const py::object& x, const py::object& kpm, const py::object& am, const py::object& tt,
                         int priority, const py::object& timeout) {
        nn::Input in = make_input(x, kpm, am, tt, std::nullopt);
        const SubmitOptions so = submit_options(priority, timeout);
        NoGil release;  // submit may block on a full queue
        return q.submit(std::move(in), so);
      }, py::arg("x"), py::arg("key_padding_mask") = py::none(), py::arg("attention_mask") = py::none(),
         py::arg("token_type_ids") = py::none(), py::arg("priority") = 0, py::arg("timeout") = py::none())
      // submit and wait in one release of the GIL: the form for a thread per request, which
      // needs no Future and no completion thread (each would take the GIL again).
      .def("_run", [](BatchQueue& q, const py::object& x, const py::object& kpm, const py::object& am, const py::object& tt,
                      int priority, const py::object& timeout) {
        nn::Input in = make_input(x, kpm, am, tt, std::nullopt);
        const SubmitOptions so = submit_options(priority, timeout);
        nn::Output out;
        {
          NoGil release;
          out = q.submit(std::move(in), so).get();
        }
        return output(out);
      }, py::arg("x"), py::arg("key_padding_mask") = py::none(), py::arg("attention_mask") = py::none(),
         py::arg("token_type_ids") = py::none(), py::arg("priority") = 0, py::arg("timeout") = py::none())
      .def("close", &BatchQueue::close, nogil())
      .def_property_readonly("closed", &BatchQueue::closed)
      .def("metrics_text", &BatchQueue::metrics_text);
}

}  // namespace streampool::python
