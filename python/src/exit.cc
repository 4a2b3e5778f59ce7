// The exit gate (Note [Python exit]).

#include <atomic>
#include <chrono>
#include <thread>

#include "bindings.h"
#include "streampool/process_exit.h"

namespace streampool::python {
namespace {

// Note [Python exit]
// ~~~~~~~~~~~~~~~~~~
// A daemon thread that returns from streampool (the GIL released) after the interpreter began to
// finalize is ended by Python with pthread_exit inside PyEval_RestoreThread. That unwind runs the
// destructors of pybind11's argument holders, which drop Python references without the GIL: a
// corrupted heap, or with pybind11's GIL assertion a std::terminate (seen with Python 3.12).
// So the package's atexit hook (streampool/_queue.py, on the finalizing thread, after Python
// joined the non-daemon threads and after the completion thread ended) closes this gate: from
// then on every other thread that leaves a NoGil scope parks for good instead of retaking the
// GIL (what Python 3.14 itself does to daemon threads); the process is ending, and they end with
// it. A thread already past the check when the gate closed is waited for with the GIL released:
// it gets the GIL before finalization starts and goes back to Python, whose own ending of the
// thread unwinds only Python's frames.
// The hook also closes the library's CUDA exit gate at once (streampool::begin_exit): a thread
// still inside a CUDA call finishes it before exit() runs any library's static destructors.
//
// Shared state (lock-free; the GIL orders nothing here): g_exiting, g_exit_thread (written
// before g_exiting, by the finalizing thread only), g_restoring (threads between the check and
// the end of PyEval_RestoreThread).
std::atomic<bool> g_exiting{false};
std::atomic<unsigned long> g_exit_thread{0};
std::atomic<int> g_restoring{0};

[[noreturn]] void park() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

}  // namespace

bool python_exiting() { return g_exiting.load(); }

void exit_gate_restore(PyThreadState* state) {
  g_restoring.fetch_add(1);
  if (g_exiting.load() && PyThread_get_thread_ident() != g_exit_thread.load()) {
    g_restoring.fetch_sub(1);
    park();
  }
  PyEval_RestoreThread(state);
  g_restoring.fetch_sub(1);
}

void register_exit(py::module_& m) {
  m.def("_begin_exit", [] {
    g_exit_thread.store(PyThread_get_thread_ident());
    g_exiting.store(true);
    NoGil release;
    // Threads still inside a CUDA call (a first cuBLASLt heuristic builds statics whose
    // destructors exit() would run before the library's gate: a SIGSEGV in 11 of 12 exits on
    // an H200) finish it first; their next CUDA call raises, and they park on their way back.
    streampool::begin_exit();
    // Bounded: a thread counted here is waiting for the GIL just released, or about to park.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (g_restoring.load() > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
}

}  // namespace streampool::python
