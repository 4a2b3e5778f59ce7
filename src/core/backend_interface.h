#pragma once
// The one small interface every backend implements (DESIGN.md, layer 2). Internal.
//
// Note [Backend registry]
// The interface lives in core, beside the device registry that uses it (the stream pool):
// core never includes a backend. The backends under backend/ implement it, and
// backend/registry.cc - the one file that knows which backends this build has - defines
// find_backend(). A build without CUDA links backend/no_cuda/ in place of backend/cuda/: the
// same functions, raising DeviceError, so no source file tests for a CUDA build.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "streampool/device.h"
#include "streampool/error.h"
#include "streampool/export.h"
#include "streampool/stream.h"

namespace streampool::detail {

// The first asynchronous error of a stream since it was last delivered.
class AsyncErrorSlot {
 public:
  // Keeps `error` (already an AsyncError or CudaError) unless an earlier one is pending.
  void set_if_empty(std::exception_ptr error);
  // The pending error, cleared (delivered), or nullptr.
  std::exception_ptr take();
  // The pending error, left in place, or nullptr.
  std::exception_ptr peek() const;

 private:
  std::atomic<bool> pending_{false};  // lets take/peek skip the lock when nothing failed
  mutable std::mutex mu_;             // guards error_
  std::exception_ptr error_;
};

// Wraps the exception a task threw as AsyncError naming the op and the stream.
std::exception_ptr make_async_error(const char* op, const Stream& stream, std::exception_ptr cause);

class EventImpl;

class StreamImpl {
 public:
  explicit StreamImpl(const Stream& s) : stream(s) {}
  virtual ~StreamImpl() = default;

  virtual void enqueue_host(const char* op, std::function<void()> task) = 0;
  virtual bool query() = 0;
  // Waits for work submitted before the call, then raises (and clears) the pending error.
  virtual void synchronize() = 0;
  // Later work of this stream waits for `event`'s latest record (same backend kind).
  virtual void wait(EventImpl& event) = 0;
  // As wait, for ordering a reuse of memory only: a failure recorded before `event` stays the
  // other stream's and is not raised on this one (CUDA's wait never raises one; the CPU's does).
  virtual void order_after(EventImpl& event) { wait(event); }
  virtual void* native_handle() = 0;

  // Set by the backend while this stream's work is being captured into a graph; whatever
  // cannot be captured (a host task, a synchronize) checks it and refuses with an Error.
  std::atomic<bool> capturing{false};

  // Best-effort name of the latest op submitted, for messages about asynchronous failures.
  void note_op(const char* op) { last_op.store(op, std::memory_order_relaxed); }

  const Stream stream;
  AsyncErrorSlot errors;
  std::atomic<const char*> last_op{nullptr};  // written by submitters, read by error paths
};

class EventImpl {
 public:
  EventImpl(const Device& d, bool enable_timing) : device(d), timing(enable_timing) {}
  virtual ~EventImpl() = default;
  virtual void record(StreamImpl& stream) = 0;
  virtual bool query() = 0;
  virtual void synchronize() = 0;
  virtual double elapsed_ms(EventImpl& end) = 0;

  const Device device;
  const bool timing;
};

// The buffers a captured graph copies in and out: each replay copies the caller's tensors into
// `inputs` (fixed addresses the graph reads) and the graph's `outputs` into the caller's.
struct GraphIo {
  struct Buffer {
    void* ptr;
    std::size_t bytes;
  };
  std::vector<Buffer> inputs, outputs;
};

// One instantiated graph with its copies in and out. Used by one thread at a time.
class GraphExec {
 public:
  virtual ~GraphExec() = default;
  // Copies src[i] to the graph's inputs[i], runs the graph, copies its outputs[i] to dst[i], all
  // in `stream`'s order (src and dst sized as in the GraphIo).
  virtual void replay(StreamImpl& stream, const void* const* src, void* const* dst) = 0;
  // What the captured body launches per replay, as the backend counted its nodes: kernels, and
  // copies and fills (the copies in and out around the body not included). -1 where unknown.
  virtual int body_kernels() const { return -1; }
  virtual int body_copies() const { return -1; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual int device_count() = 0;
  virtual std::unique_ptr<StreamImpl> create_stream(const Stream& stream) = 0;
  virtual std::unique_ptr<EventImpl> create_event(const Device& device, bool enable_timing) = 0;
  // Raw device memory, synchronous; the caching allocator sits above this. allocate throws on
  // any failure; try_allocate returns nullptr when the device is out of memory.
  virtual void* allocate(const Device& device, std::size_t bytes) = 0;
  virtual void* try_allocate(const Device& device, std::size_t bytes) = 0;
  virtual void deallocate(const Device& device, void* ptr) = 0;
  // Page-locked host memory, for truly asynchronous transfers; nullptr where the backend has
  // none (the CPU) or the system refuses.
  virtual void* allocate_pinned(std::size_t) { return nullptr; }
  virtual void deallocate_pinned(void*) {}
  // Asynchronous copy in `stream` order; either side may be host memory.
  virtual void copy_async(void* dst, const void* src, std::size_t bytes, StreamImpl& stream) = 0;
  virtual DeviceProperties properties(int index) = 0;
  virtual BackendVersions versions() = 0;
  // Computes something small on `stream` and checks it; throws on a wrong result.
  virtual void self_test(StreamImpl& stream) = 0;
  // Captures the work `body` submits to `stream` (on the calling thread) into a graph that copies
  // io.inputs in and io.outputs out (body fills io.outputs), or returns nullptr where the backend
  // has no graphs (the CPU). Throws GraphError, the stream left usable, when the capture fails.
  virtual std::unique_ptr<GraphExec> capture(StreamImpl&, GraphIo&, const std::function<void()>&) { return nullptr; }
  // Note [Native streams] (interop.h): ordering with another library's stream by one event.
  // Backends without native streams (the CPU) refuse with InvalidArgument. Defined here, not
  // out of line: an out-of-line virtual would become the class's key function and keep its
  // typeinfo inside the library, where code outside it (UBSan's vptr checks in the tests)
  // cannot see it.
  virtual void wait_native(StreamImpl& stream, std::uintptr_t) {
    throw InvalidArgument(stream.stream.str() + ": " + std::string(to_string(kind())) +
                          " has no native streams to order with (only CUDA streams can be named by a handle)");
  }
  virtual void native_wait(std::uintptr_t native, StreamImpl& stream) { wait_native(stream, native); }
};

// nullptr where this build lacks the backend (defined in backend/registry.cc).
Backend* find_backend(DeviceKind kind);
// Throws DeviceError where this build lacks the backend. A test hook: tests/support/work.cc
// allocates and copies through it.
STREAMPOOL_TEST_HOOK Backend& backend(DeviceKind kind);

}  // namespace streampool::detail
