// Tensor in Python: shape, dtype, device, numpy(), to(), and DLPack both ways.
//
// Note [DLPack]
// Export (__dlpack__): the capsule holds a reference to the tensor; the consumer names its
// stream (DLPack / array API: None = the legacy default stream, -1 = no ordering, 1 legacy, 2
// per-thread, else a cudaStream_t) and that stream waits, by one event, for the exporting
// thread's current stream. When the consumer lets go (its deleter, on any thread), the tensor's
// allocation stream first waits for the consumer's stream, so the cache never hands the memory
// out while the consumer's work may still read it. The CPU has no streams to order with: the
// current stream is synchronized before the capsule is made.
// Import (from_dlpack): we ask the producer for our current stream's handle, wrap its memory
// without a copy (from_external), and when the last streampool view goes, an event recorded on
// that stream is waited for on the completion thread before the producer's deleter runs there
// with the GIL (Note [Python threads]): never on a stream worker, never before our work is done.

#include <dlpack/dlpack.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"

namespace streampool::python {

DType dtype_from_py(const py::handle& h) {
  std::string name = py::str(h).cast<std::string>();
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  if (name == "bool_" || name == "bool") return DType::boolean;
  return parse_dtype(name);
}

namespace {

constexpr std::uint8_t kDLBoolCode = 6;  // DLPack 0.8's kDLBool; Debian's 0.6 header predates it

DLDataType dl_type(DType t) {
  switch (t) {
    case DType::float32: return {kDLFloat, 32, 1};
    case DType::float16: return {kDLFloat, 16, 1};
    case DType::bfloat16: return {kDLBfloat, 16, 1};
    case DType::int64: return {kDLInt, 64, 1};
    case DType::int32: return {kDLInt, 32, 1};
    case DType::uint8: return {kDLUInt, 8, 1};
    case DType::boolean: return {kDLBoolCode, 8, 1};
  }
  throw InvalidArgument("DLPack: unknown dtype");
}

DType from_dl_type(DLDataType t) {
  if (t.lanes != 1) throw InvalidArgument("from_dlpack: vector types (lanes " + std::to_string(t.lanes) + ") are not supported");
  if (t.code == kDLFloat && t.bits == 32) return DType::float32;
  if (t.code == kDLFloat && t.bits == 16) return DType::float16;
  if (t.code == kDLBfloat && t.bits == 16) return DType::bfloat16;
  if (t.code == kDLInt && t.bits == 64) return DType::int64;
  if (t.code == kDLInt && t.bits == 32) return DType::int32;
  if (t.code == kDLUInt && t.bits == 8) return DType::uint8;
  if (t.code == kDLBoolCode && t.bits == 8) return DType::boolean;
  throw InvalidArgument("from_dlpack: no streampool dtype for DLPack type code " + std::to_string(t.code) + ", " +
                        std::to_string(t.bits) + " bits (float32, float16, bfloat16, int64, int32, uint8, bool)");
}

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::float32: return py::dtype("float32");
    case DType::float16: return py::dtype("float16");
    case DType::int64: return py::dtype("int64");
    case DType::int32: return py::dtype("int32");
    case DType::uint8: return py::dtype("uint8");
    case DType::boolean: return py::dtype("bool");
    case DType::bfloat16: break;
  }
  throw InvalidArgument("numpy(): NumPy has no bfloat16; use t.to('float32').numpy(), or torch.from_dlpack(t)");
}

// The native stream an exporter is asked to order with (Note [DLPack]); nullopt: no ordering.
std::optional<std::uintptr_t> consumer_stream(const Device& d, const py::object& stream) {
  if (d.kind == DeviceKind::cpu) {
    if (!stream.is_none() && stream.cast<long long>() != -1) {
      throw InvalidArgument("__dlpack__: a CPU tensor takes stream=None (got " + py::str(stream).cast<std::string>() + ")");
    }
    return std::nullopt;
  }
  if (stream.is_none()) return std::uintptr_t{1};  // the array API: None means the legacy default stream
  const long long v = stream.cast<long long>();
  if (v == -1) return std::nullopt;
  if (v == 0) throw InvalidArgument("__dlpack__: stream=0 is ambiguous for CUDA (use 1, 2 or a stream handle)");
  return static_cast<std::uintptr_t>(v);
}

struct Exported {
  DLManagedTensor managed{};
  Tensor tensor;
  std::vector<std::int64_t> shape, strides;
  std::optional<std::uintptr_t> consumer;  // the consumer's native stream, if one was named
};

void exported_deleter(DLManagedTensor* m) {
  auto* e = static_cast<Exported*>(m->manager_ctx);
  if (e->consumer && e->tensor.numel() > 0) {
    try {
      wait_native_stream(e->tensor.allocation_stream(), *e->consumer);
    } catch (const std::exception&) {
      // The consumer's stream is gone or failed; its work on the memory is over either way.
    }
  }
  delete e;
}

py::capsule to_dlpack(const Tensor& t, const py::object& stream) {
  const Device d = t.device();
  auto e = std::make_unique<Exported>();
  e->tensor = t;
  e->consumer = consumer_stream(d, stream);
  {
    NoGil release;
    const Stream mine = current_stream(d);
    if (d.kind == DeviceKind::cpu) {
      mine.synchronize();  // Note [DLPack]: the consumer reads at once
    } else if (e->consumer) {
      native_stream_wait(*e->consumer, mine);
    }
  }
  e->shape = t.shape();
  e->strides = t.strides();
  DLTensor& dl = e->managed.dl_tensor;
  dl.data = t.data_ptr();  // the first element, as PyTorch exports: consumers need no byte_offset
  dl.byte_offset = 0;
  dl.device = {d.kind == DeviceKind::cpu ? kDLCPU : kDLCUDA, d.kind == DeviceKind::cpu ? 0 : d.index};
  dl.ndim = static_cast<int>(t.dim());
  dl.dtype = dl_type(t.dtype());
  dl.shape = e->shape.data();
  dl.strides = e->strides.data();
  e->managed.manager_ctx = e.get();
  e->managed.deleter = exported_deleter;
  DLManagedTensor* raw = &e.release()->managed;
  // A capsule nobody consumed (still named "dltensor") owns the tensor; a consumer renames it.
  return py::capsule(raw, "dltensor", [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      if (m && m->deleter) m->deleter(m);
    }
  });
}

Tensor from_dlpack_capsule(py::capsule cap) {
  if (!PyCapsule_IsValid(cap.ptr(), "dltensor")) {
    throw InvalidArgument("from_dlpack: not a DLPack capsule, or one already consumed");
  }
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  // Ours from now on: the capsule must not free it again.
  if (PyCapsule_SetName(cap.ptr(), "used_dltensor") != 0) throw py::error_already_set();
  std::shared_ptr<DLManagedTensor> guard(m, [](DLManagedTensor* p) { if (p->deleter) p->deleter(p); });
  const DLTensor& dl = m->dl_tensor;
  Device dev;
  if (dl.device.device_type == kDLCPU || dl.device.device_type == kDLCUDAHost) {
    dev = Device(DeviceKind::cpu, 0);
  } else if (dl.device.device_type == kDLCUDA) {
    dev = Device(DeviceKind::cuda, dl.device.device_id);
  } else {
    throw InvalidArgument("from_dlpack: DLPack device type " + std::to_string(dl.device.device_type) +
                          " is neither the CPU nor a CUDA device");
  }
  const DType dt = from_dl_type(dl.dtype);
  Shape shape(dl.shape, dl.shape + dl.ndim), strides;
  if (dl.strides) strides.assign(dl.strides, dl.strides + dl.ndim);
  void* data = static_cast<char*>(dl.data) + dl.byte_offset;
  const Stream s = current_stream(dev);
  // Released when the last view goes, from whichever thread that is (Note [DLPack]).
  std::shared_ptr<void> owner(nullptr, [g = std::move(guard), s](void*) mutable {
    if (python_exiting()) {
      new std::shared_ptr<DLManagedTensor>(std::move(g));  // leaked on purpose: Python is going away
      return;
    }
    auto done = std::make_shared<Event>();
    try {
      done->record(s);
    } catch (const std::exception&) {
      // The stream failed: its work on the memory is over; release without waiting.
    }
    // Moved, not copied: no reference may stay behind in this deleter, which runs on whatever
    // thread dropped the last view (a stream or queue worker).
    push_completion({[done] { done->synchronize(); }, [g = std::move(g)]() mutable { g.reset(); }, 0});
  });
  // `guard` moved into the owner; a failure below releases it through the owner.
  return from_external(data, shape, strides, dt, dev, std::move(owner));
}

py::array to_numpy(const Tensor& t) {
  py::array out(numpy_dtype(t.dtype()), std::vector<py::ssize_t>(t.shape().begin(), t.shape().end()));
  void* dst = out.mutable_data();
  const std::size_t bytes = t.nbytes();
  {
    NoGil release;
    Tensor c = t.contiguous();
    c.copy_to_host(dst, bytes);
  }
  return out;
}

}  // namespace

Tensor from_dlpack(const py::object& obj) {
  if (py::isinstance<py::capsule>(obj)) return from_dlpack_capsule(obj.cast<py::capsule>());
  if (!py::hasattr(obj, "__dlpack__")) {
    throw InvalidArgument("from_dlpack: " + py::str(py::type::of(obj)).cast<std::string>() +
                          " has no __dlpack__ (a NumPy array, a PyTorch tensor, or any DLPack producer)");
  }
  py::tuple dev = obj.attr("__dlpack_device__")();
  const int type = dev[0].cast<int>(), id = dev[1].cast<int>();
  py::object cap;
  if (type == kDLCUDA) {
    const Stream s = current_stream(Device(DeviceKind::cuda, id));
    cap = obj.attr("__dlpack__")(py::arg("stream") = reinterpret_cast<std::uintptr_t>(s.native_handle()));
  } else {
    cap = obj.attr("__dlpack__")();
  }
  return from_dlpack_capsule(cap.cast<py::capsule>());
}

Tensor tensor_from_numpy(const py::object& obj, const py::object& device, const py::object& dtype) {
  py::module_ np = py::module_::import("numpy");
  py::array arr = np.attr("ascontiguousarray")(obj);
  if (arr.dtype().is(py::dtype("float64"))) arr = arr.attr("astype")("float32");  // no float64 here
  DType dt = dtype_from_py(arr.dtype());
  const Device dev = device.is_none() ? Device(DeviceKind::cpu, 0) : device_from_py(device);
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  const void* data = arr.data();
  const std::size_t bytes = static_cast<std::size_t>(arr.nbytes());
  const std::optional<DType> want = dtype.is_none() ? std::nullopt : std::optional<DType>(dtype_from_py(dtype));
  Tensor t;
  {
    NoGil release;  // nothing of Python's below
    t = from_host(data, bytes, shape, dt, dev);  // copies before it returns
    if (want && *want != dt) t = t.to(*want);
  }
  return t;
}

void register_tensor(py::module_& m) {
  py::class_<Tensor>(m, "Tensor", "A view of device memory with a shape and a dtype.")
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("device", &Tensor::device)
      .def_property_readonly("ndim", &Tensor::dim)
      .def("numel", &Tensor::numel)
      .def("__len__", [](const Tensor& t) {
        if (t.dim() == 0) throw InvalidArgument("len() of a 0-d tensor");
        return t.size(0);
      })
      .def("numpy", &to_numpy, "A NumPy copy (waits for this thread's current stream).")
      // numpy.asarray(t) and friends: the same copy (np.from_dlpack(t) shares the memory instead).
      .def("__array__", [](const Tensor& t, const py::object& dtype, const py::kwargs&) {
        py::array a = to_numpy(t);
        return dtype.is_none() ? py::object(a) : a.attr("astype")(dtype);
      }, py::arg("dtype") = py::none())
      .def("to", [](const Tensor& t, const py::object& target) {
        if (py::isinstance<Device>(target)) {
          NoGil release;
          return t.to(target.cast<Device>());
        }
        const std::string s = py::str(target).cast<std::string>();
        bool is_device = s == "cpu" || s.rfind("cuda", 0) == 0;
        if (is_device) {
          const Device d = Device::parse(s);
          NoGil release;
          return t.to(d);
        }
        const DType dt = dtype_from_py(target);
        NoGil release;
        return t.to(dt);
      }, py::arg("device_or_dtype"))
      .def("contiguous", &Tensor::contiguous, nogil())
      .def("clone", &Tensor::clone, nogil())
      .def("reshape", [](const Tensor& t, const std::vector<std::int64_t>& s) { return t.reshape(s); })
      .def("record_stream", &Tensor::record_stream, py::arg("stream"))
      .def_property_readonly("data_ptr", [](const Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.data_ptr()); })
      .def("__dlpack__", [](const Tensor& t, const py::object& stream, const py::kwargs&) { return to_dlpack(t, stream); },
           py::arg("stream") = py::none())
      .def("__dlpack_device__", [](const Tensor& t) {
        const Device d = t.device();
        return py::make_tuple(d.kind == DeviceKind::cpu ? static_cast<int>(kDLCPU) : static_cast<int>(kDLCUDA),
                              d.kind == DeviceKind::cpu ? 0 : d.index);
      })
      .def("__repr__", &Tensor::str);

  m.def("tensor", &tensor_from_numpy, py::arg("data"), py::arg("device") = py::none(), py::arg("dtype") = py::none(),
        "A new tensor with a copy of `data` (anything numpy.asarray takes; float64 becomes float32).");
  m.def("from_dlpack", &from_dlpack, py::arg("obj"), "A zero-copy view of a DLPack producer's memory (NumPy, PyTorch ...).");
  m.def("zeros", [](const std::vector<std::int64_t>& shape, const py::object& dtype, const py::object& device) {
    const DType dt = dtype_from_py(dtype);
    const Device d = device_from_py(device);
    NoGil release;
    return zeros(shape, dt, d);
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu");
}

}  // namespace streampool::python
