#pragma once
// The Python bindings (_core): one registration function per concept, and what they share.
//
// Note [Python threads]
// Every binding that may wait or compute releases the GIL (py::gil_scoped_release), so Python
// threads run streampool work in parallel, each on its own pool stream (its OS thread's). No
// Python object is ever touched on a stream's worker thread: what must reach Python from there
// (a finished BatchQueue request, the release of memory another library lent us) is queued
// here in C++ and handed over by the completion thread, a Python daemon thread that waits in
// next_completions() with the GIL released (streampool/_completions.py).

#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "streampool/streampool.h"

namespace py = pybind11;

namespace streampool::python {

// Interpreter exit (Note [Python exit]). exit_gate_restore() retakes the GIL for NoGil.
void exit_gate_restore(PyThreadState* state);
// True once the package's atexit hook ran: memory lent by NumPy or PyTorch is then leaked.
bool python_exiting();

// Releases the GIL for its scope, like py::gil_scoped_release. Its destructor may throw: where a
// thread still retakes the GIL while the interpreter finalizes, Python ends it by pthread_exit
// inside PyEval_RestoreThread, and that forced unwind must pass through here (a noexcept
// destructor would turn it into std::terminate). The exit gate keeps that from happening.
class NoGil {
 public:
  NoGil() : state_(PyEval_SaveThread()) {}
  ~NoGil() noexcept(false) { exit_gate_restore(state_); }
  NoGil(const NoGil&) = delete;
  NoGil& operator=(const NoGil&) = delete;

 private:
  PyThreadState* state_;
};
using nogil = py::call_guard<NoGil>;

void register_errors(py::module_& m);
void register_runtime(py::module_& m);
void register_tensor(py::module_& m);
void register_nn(py::module_& m);
void register_exit(py::module_& m);

// "float32", "float16", ... or a NumPy / PyTorch dtype object (its str()).
DType dtype_from_py(const py::handle& h);
Device device_from_py(const py::handle& h);
// A zero-copy view of a DLPack producer (or capsule); a copy of anything numpy.asarray takes.
Tensor from_dlpack(const py::object& obj);
Tensor tensor_from_numpy(const py::object& obj, const py::object& device, const py::object& dtype);

// Work for the completion thread (Note [Python threads]). `wait` runs first with the GIL
// released (it may block: an event of a stream), then `run` with the GIL held. Either may be
// empty. Thread-safe; never touches Python.
struct Completion {
  std::function<void()> wait;
  std::function<void()> run;
  std::uint64_t token = 0;  // a BatchQueue request's token (0: none)
};
void push_completion(Completion c);
void register_completions(py::module_& m);

}  // namespace streampool::python
