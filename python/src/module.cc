// streampool._core: the extension module. Errors, devices, streams, events and settings here;
// tensors in tensor.cc, modules and the BatchQueue in nn.cc.

#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings.h"

namespace streampool::python {

Device device_from_py(const py::handle& h) {
  if (py::isinstance<Device>(h)) return h.cast<Device>();
  if (py::isinstance<py::str>(h)) return Device::parse(h.cast<std::string>());
  // A torch.device or anything whose str() is "cpu" / "cuda:0".
  return Device::parse(py::str(h).cast<std::string>());
}

namespace {

// Python exception classes mirroring the C++ hierarchy; each also derives from the builtin
// a Python user would catch (ValueError for InvalidArgument, TimeoutError, MemoryError ...).
template <typename E>
void exception(py::module_& m, const char* name, py::handle base) {
  static py::exception<E> ex(m, name, base);
  ex.attr("__module__") = "streampool";  // streampool.InvalidArgument, as users import it
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const E& e) {
      PyErr_SetString(ex.ptr(), e.what());
    }
  });
}

py::tuple bases(py::handle a, py::handle b) { return py::make_tuple(a, b); }

}  // namespace

void register_errors(py::module_& m) {
  static py::exception<Error> error(m, "Error", PyExc_RuntimeError);
  error.attr("__module__") = "streampool";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
  py::module_ futures = py::module_::import("concurrent.futures");
  exception<InvalidArgument>(m, "InvalidArgument", bases(error, PyExc_ValueError));
  exception<DeviceError>(m, "DeviceError", error);
  exception<ConfigError>(m, "ConfigError", bases(error, PyExc_ValueError));
  exception<ForkedChildError>(m, "ForkedChildError", error);
  exception<PoolExhaustedError>(m, "PoolExhaustedError", error);
  exception<OutOfMemoryError>(m, "OutOfMemoryError", bases(error, PyExc_MemoryError));
  exception<FormatError>(m, "FormatError", bases(error, PyExc_ValueError));
  exception<CudaError>(m, "CudaError", error);
  exception<GraphError>(m, "GraphError", error);
  exception<TimeoutError>(m, "TimeoutError", bases(error, PyExc_TimeoutError));
  exception<QueueFullError>(m, "QueueFullError", error);
  exception<CancelledError>(m, "CancelledError", bases(error, futures.attr("CancelledError")));
  exception<QueueClosedError>(m, "QueueClosedError", error);
  exception<AsyncError>(m, "AsyncError", error);
}

void register_runtime(py::module_& m) {
  py::class_<Device>(m, "Device", "A processor: 'cpu' or 'cuda:N'.")
      .def(py::init([](const std::string& text) { return Device::parse(text); }), py::arg("spec"))
      .def_property_readonly("type", [](const Device& d) { return std::string(to_string(d.kind)); })
      .def_property_readonly("index", [](const Device& d) { return d.index; })
      .def("__str__", &Device::str)
      .def("__repr__", [](const Device& d) { return "streampool.Device('" + d.str() + "')"; })
      .def("__eq__", [](const Device& a, const Device& b) { return a == b; })
      .def("__hash__", [](const Device& d) { return std::hash<Device>()(d); });

  m.def("device_count", [](const std::string& kind) { return device_count(Device::parse(kind).kind); },
        py::arg("kind") = "cuda", "Visible devices of a kind ('cpu' or 'cuda').");
  m.def("is_available", [](const std::string& kind) {
    const Device d = Device::parse(kind);
    return is_compiled(d.kind) && device_count(d.kind) > d.index;
  }, py::arg("device") = "cuda");

  py::class_<Stream>(m, "Stream", "An ordered queue of device work; each thread has its own (current_stream).")
      .def_property_readonly("device", &Stream::device)
      .def_property_readonly("id", &Stream::id)
      .def("query", &Stream::query, nogil())
      .def("synchronize", &Stream::synchronize, nogil())
      .def("wait_event", &Stream::wait, py::arg("event"), nogil())
      .def_property_readonly("native_handle",
                             [](const Stream& s) { return reinterpret_cast<std::uintptr_t>(s.native_handle()); },
                             "cudaStream_t as an integer (0 for CPU streams)")
      .def("__str__", &Stream::str)
      .def("__repr__", [](const Stream& s) { return "<streampool.Stream " + s.str() + ">"; })
      .def("__eq__", [](const Stream& a, const Stream& b) { return a == b; })
      .def("__hash__", [](const Stream& s) { return std::hash<std::string>()(s.str()); });

  m.def("current_stream", [](const py::object& d) { return current_stream(device_from_py(d)); }, py::arg("device"),
        "The calling thread's own stream on the device (leased at first use, returned when the thread ends).");
  m.def("stream_from_pool", [](const py::object& d) { return stream_from_pool(device_from_py(d)); }, py::arg("device"));
  m.def("default_stream", [](const py::object& d) { return default_stream(device_from_py(d)); }, py::arg("device"));
  m.def("synchronize", [](const py::object& d) {
    const Device dev = device_from_py(d);
    NoGil release;
    synchronize(dev);
  }, py::arg("device"), "Waits for the work every stream of the device was given so far.");

  // StreamGuard as a context manager: the guard lives between __enter__ and __exit__.
  struct PyStreamGuard {
    explicit PyStreamGuard(const Stream& s) : stream(s) {}
    Stream stream;
    std::optional<StreamGuard> guard;
  };
  py::class_<PyStreamGuard>(m, "StreamGuard", "with StreamGuard(stream): work of this thread goes to `stream`.")
      .def(py::init<const Stream&>(), py::arg("stream"))
      .def("__enter__", [](PyStreamGuard& g) {
        if (g.guard) throw InvalidArgument("StreamGuard: already entered");
        g.guard.emplace(g.stream);
        return g.stream;
      })
      .def("__exit__", [](PyStreamGuard& g, const py::args&) { g.guard.reset(); });

  py::class_<Event>(m, "Event", "A point in a stream's work: record, wait for, time.")
      .def(py::init<bool>(), py::arg("enable_timing") = false)
      .def("record", &Event::record, py::arg("stream"), nogil())
      .def("query", &Event::query, nogil())
      .def("synchronize", &Event::synchronize, nogil())
      .def("elapsed_ms", &Event::elapsed_ms, py::arg("end"));

  m.def("settings", [] {
    py::dict d;
    for (const auto& r : settings_report()) d[py::str(r.name)] = r.value;
    return d;
  }, "Every STREAMPOOL_* setting and the value in effect.");
  m.def("memory_stats", [](const py::object& d) {
    const MemoryStats s = memory_stats(device_from_py(d));
    py::dict o;
    o["allocated_bytes"] = s.allocated_bytes;
    o["allocated_peak"] = s.allocated_peak;
    o["reserved_bytes"] = s.reserved_bytes;
    o["reserved_peak"] = s.reserved_peak;
    o["allocations"] = s.allocations;
    o["frees"] = s.frees;
    o["device_allocations"] = s.device_allocations;
    o["retries"] = s.retries;
    o["ooms"] = s.ooms;
    o["pending_frees"] = s.pending_frees;
    o["cross_stream_segments"] = s.cross_stream_segments;
    o["recycled_segments"] = s.recycled_segments;
    o["limit_bytes"] = s.limit_bytes;
    return o;
  }, py::arg("device"));
  m.def("reset_peak_stats", [](const py::object& d) { reset_peak_stats(device_from_py(d)); }, py::arg("device"));
  m.def("set_memory_limit", [](const py::object& d, std::size_t bytes) { set_memory_limit(device_from_py(d), bytes); },
        py::arg("device"), py::arg("bytes"), "Caps what the allocator reserves on the device (0 removes the cap).");
  m.def("memory_limit", [](const py::object& d) { return memory_limit(device_from_py(d)); }, py::arg("device"));
  m.def("empty_cache", [](const py::object& d) {
    const Device dev = device_from_py(d);
    NoGil release;
    empty_cache(dev);
  }, py::arg("device"));
}

}  // namespace streampool::python

PYBIND11_MODULE(_core, m) {
  m.doc() = "streampool: thread-safe parallel inference on CUDA GPUs and the CPU (the C++ runtime's bindings)";
  using namespace streampool::python;
  register_errors(m);
  register_runtime(m);
  register_tensor(m);
  register_nn(m);
  register_completions(m);
  register_exit(m);
}
