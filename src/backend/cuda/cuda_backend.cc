// CUDA backend: non-blocking cudaStream_t's, events from a per-device pool.

#include "backend/cuda/exit_gate.h"
#include <cuda_runtime.h>

#include <cmath>
#include <mutex>
#include <vector>

#include "backend/registry.h"
#include "core/per_device.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/nvml_count.h"

namespace streampool::detail {

cudaError_t launch_self_test_kernel(float* out, int n, float scale, float shift, cudaStream_t stream);

namespace {

std::string where(const Stream& s) {
  return s.str();
}

// Freed events are kept for reuse: creating one costs a driver call. Never destroyed
// (Note [Process lifetime]); one per device and timing flag.
class CudaEventPool {
 public:
  cudaEvent_t get(int device, bool timing) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& list = free_[timing ? 1 : 0];
      if (!list.empty()) {
        cudaEvent_t e = list.back();
        list.pop_back();
        return e;
      }
    }
    CudaDeviceGuard guard(device);
    cudaEvent_t e = nullptr;
    STREAMPOOL_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
                          "cuda:" + std::to_string(device));
    return e;
  }
  void put(cudaEvent_t e, bool timing) {
    std::lock_guard<std::mutex> lock(mu_);
    free_[timing ? 1 : 0].push_back(e);
  }

 private:
  std::mutex mu_;  // guards free_
  std::vector<cudaEvent_t> free_[2];
};

CudaEventPool& event_pool(int device) {
  static auto* pools = new PerDevice<CudaEventPool>;  // Note [Process lifetime]
  return pools->get(Device(DeviceKind::cuda, device), [] { return new CudaEventPool; });
}

class CudaStream final : public StreamImpl {
 public:
  explicit CudaStream(const Stream& s) : StreamImpl(s) {
    STREAMPOOL_CUDA_SCOPE;
    CudaDeviceGuard guard(s.device().index);
    // Non-blocking: never implicitly synchronizes with the legacy default stream, so threads
    // never serialize each other through it. Id 0 is such a stream too.
    STREAMPOOL_CUDA_CHECK(cudaStreamCreateWithFlags(&handle_, cudaStreamNonBlocking), where(s));
  }

  void enqueue_host(const char* op, std::function<void()> task) override {
    STREAMPOOL_CUDA_SCOPE;
    refuse_while_capturing(op ? op : "a host task");
    note_op(op);
    auto* t = new HostTask{this, op, std::move(task), host_submitted_.fetch_add(1, std::memory_order_relaxed) + 1};
    cudaError_t st = cudaLaunchHostFunc(handle_, &HostTask::run, t);
    if (st != cudaSuccess) {
      delete t;
      throw_cuda("cudaLaunchHostFunc", st, where(stream) + " (op '" + std::string(op ? op : "?") + "')");
    }
  }

  bool query() override {
    STREAMPOOL_CUDA_SCOPE;
    refuse_while_capturing("query");
    cudaError_t st = cudaStreamQuery(handle_);
    if (st == cudaSuccess) return true;
    if (st == cudaErrorNotReady) return false;
    throw_cuda("cudaStreamQuery", st, context());
  }

  void synchronize() override {
    STREAMPOOL_CUDA_SCOPE;
    refuse_while_capturing("synchronize");
    cudaError_t st = cudaStreamSynchronize(handle_);
    if (st != cudaSuccess) throw_cuda("cudaStreamSynchronize", st, context());
    if (auto e = errors.take()) std::rethrow_exception(e);
  }

  void wait(EventImpl& event) override;

  void* native_handle() override { return handle_; }
  cudaStream_t handle() const { return handle_; }

  // Host tasks submitted so far; an event snapshots it at record time.
  std::uint64_t host_submitted() const { return host_submitted_.load(std::memory_order_relaxed); }
  // The pending host-task error if the task that failed came at or before `seq`.
  std::exception_ptr error_at_or_before(std::uint64_t seq) const {
    std::exception_ptr e = errors.peek();
    return (e && failed_seq_.load(std::memory_order_acquire) <= seq) ? e : nullptr;
  }

  // Host work, queries and waits cannot go into a graph (and would end its capture): a clear
  // error instead, which the graph layer turns into "not capturable" (Note [Graph arenas]).
  void refuse_while_capturing(const char* what) const {
    if (capturing.load(std::memory_order_relaxed)) {
      throw GraphError(std::string(what) + " on " + stream.str() +
                       " cannot be captured into a graph (host work, queries and synchronization run eagerly only)");
    }
  }

  std::string context() const {
    const char* op = last_op.load(std::memory_order_relaxed);
    return where(stream) + (op ? " (latest op submitted: '" + std::string(op) + "')" : std::string());
  }

 private:
  struct HostTask {
    CudaStream* stream;
    const char* op;
    std::function<void()> fn;
    std::uint64_t seq;
    static void CUDART_CB run(void* p) {
      auto* t = static_cast<HostTask*>(p);
      try {
        t->fn();
      } catch (...) {
        CudaStream& s = *t->stream;
        if (!s.errors.peek()) s.failed_seq_.store(t->seq, std::memory_order_release);
        s.errors.set_if_empty(make_async_error(t->op, s.stream, std::current_exception()));
      }
      delete t;
    }
  };

  cudaStream_t handle_ = nullptr;  // created once, never destroyed (Note [Process lifetime])
  std::atomic<std::uint64_t> host_submitted_{0};  // incremented by submitters
  // Sequence number of the host task behind the pending error; host tasks run one at a time
  // in stream order, so only the callback thread writes it.
  std::atomic<std::uint64_t> failed_seq_{0};
};

cudaEvent_t checked_event(const Device& d, bool timing) {
  STREAMPOOL_CUDA_SCOPE;
  return event_pool(d.index).get(d.index, timing);
}

class CudaEvent final : public EventImpl {
 public:
  CudaEvent(const Device& d, bool timing) : EventImpl(d, timing), event_(checked_event(d, timing)) {}
  ~CudaEvent() override { event_pool(device.index).put(event_, timing); }

  void record(StreamImpl& s) override {
    STREAMPOOL_CUDA_SCOPE;
    auto& cs = static_cast<CudaStream&>(s);
    cs.refuse_while_capturing("event record");
    STREAMPOOL_CUDA_CHECK(cudaEventRecord(event_, cs.handle()), cs.context());
    std::lock_guard<std::mutex> lock(mu_);
    recorded_on_ = &cs;
    host_seq_ = cs.host_submitted();
  }

  bool query() override {
    STREAMPOOL_CUDA_SCOPE;
    cudaError_t st = cudaEventQuery(event_);
    if (st == cudaSuccess) return true;
    if (st == cudaErrorNotReady) return false;
    throw_cuda("cudaEventQuery", st, device.str());
  }

  void synchronize() override {
    STREAMPOOL_CUDA_SCOPE;
    STREAMPOOL_CUDA_CHECK(cudaEventSynchronize(event_), device.str());
    CudaStream* s;
    std::uint64_t seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s = recorded_on_;
      seq = host_seq_;
    }
    // Host tasks before the record ran before the event completed: their error is known now.
    if (s) {
      if (auto e = s->error_at_or_before(seq)) std::rethrow_exception(e);
    }
  }

  double elapsed_ms(EventImpl& end) override {
    STREAMPOOL_CUDA_SCOPE;
    float ms = 0;
    STREAMPOOL_CUDA_CHECK(cudaEventElapsedTime(&ms, event_, static_cast<CudaEvent&>(end).event_), device.str());
    return ms;
  }

  cudaEvent_t handle() const { return event_; }

 private:
  cudaEvent_t event_;
  std::mutex mu_;                     // guards recorded_on_, host_seq_
  CudaStream* recorded_on_ = nullptr;  // streams live for the whole process
  std::uint64_t host_seq_ = 0;
};

void CudaStream::wait(EventImpl& event) {
    STREAMPOOL_CUDA_SCOPE;
  STREAMPOOL_CUDA_CHECK(cudaStreamWaitEvent(handle_, static_cast<CudaEvent&>(event).handle(), 0), context());
}

cudaStream_t native_handle_of(StreamImpl& s, std::uintptr_t native) {
  if (native == 0) {
    throw InvalidArgument(s.stream.str() + ": native stream 0 is ambiguous (DLPack: 1 is the legacy default stream, "
                          "2 the per-thread default stream, anything else a cudaStream_t)");
  }
  return reinterpret_cast<cudaStream_t>(native);
}

// One event between a pool stream and a native one: `into_pool` makes the pool stream wait
// for the native stream's work so far, else the other way round.
void order(cudaStream_t native, StreamImpl& s, bool into_pool) {
  STREAMPOOL_CUDA_SCOPE;
  auto& cs = static_cast<CudaStream&>(s);
  const int index = s.stream.device().index;
  CudaDeviceGuard guard(index);
  cs.refuse_while_capturing("ordering with a native stream");
  cudaEvent_t e = event_pool(index).get(index, false);
  cudaError_t st = cudaEventRecord(e, into_pool ? native : cs.handle());
  if (st == cudaSuccess) st = cudaStreamWaitEvent(into_pool ? cs.handle() : native, e, 0);
  event_pool(index).put(e, false);  // the wait has taken the event's state: it may be reused
  STREAMPOOL_CUDA_CHECK(st, cs.context() + " (ordering with native stream " + std::to_string(reinterpret_cast<std::uintptr_t>(native)) + ")");
}

class CudaBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::cuda; }

  int device_count() override {
    std::call_once(count_once_, [&] {
      int n = nvml_visible_device_count();
      if (n < 0) {
        cudaError_t st = cudaGetDeviceCount(&n);
        if (st == cudaErrorNoDevice || st == cudaErrorInsufficientDriver) {
          (void)cudaGetLastError();
          n = 0;
        } else if (st != cudaSuccess) {
          throw_cuda("cudaGetDeviceCount", st, "cuda");
        }
      }
      count_ = n;
    });
    return count_;
  }

  std::unique_ptr<StreamImpl> create_stream(const Stream& s) override {
    auto stream = std::make_unique<CudaStream>(s);
    install_exit_gate();  // after the CUDA runtime is up: Note [Exit while threads work]
    return stream;
  }

  std::unique_ptr<EventImpl> create_event(const Device& d, bool timing) override {
    return std::make_unique<CudaEvent>(d, timing);
  }

  void* allocate(const Device& d, std::size_t bytes) override {
    STREAMPOOL_CUDA_SCOPE;
    CudaDeviceGuard guard(d.index);
    void* p = nullptr;
    STREAMPOOL_CUDA_CHECK(cudaMalloc(&p, bytes), d.str() + " (" + std::to_string(bytes) + " bytes)");
    return p;
  }

  void* try_allocate(const Device& d, std::size_t bytes) override {
    STREAMPOOL_CUDA_SCOPE;
    CudaDeviceGuard guard(d.index);
    void* p = nullptr;
    cudaError_t st = cudaMalloc(&p, bytes);
    if (st == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky: clear it so later calls do not see it
      return nullptr;
    }
    if (st != cudaSuccess) throw_cuda("cudaMalloc", st, d.str() + " (" + std::to_string(bytes) + " bytes)");
    return p;
  }

  void deallocate(const Device& d, void* p) override {
    STREAMPOOL_CUDA_SCOPE;
    CudaDeviceGuard guard(d.index);
    STREAMPOOL_CUDA_CHECK(cudaFree(p), d.str());
  }

  void* allocate_pinned(std::size_t bytes) override {
    STREAMPOOL_CUDA_SCOPE;
    void* p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return p;
  }

  void deallocate_pinned(void* p) override {
    STREAMPOOL_CUDA_SCOPE;
    (void)cudaFreeHost(p);
  }

  void copy_async(void* dst, const void* src, std::size_t bytes, StreamImpl& s) override {
    STREAMPOOL_CUDA_SCOPE;
    auto& cs = static_cast<CudaStream&>(s);
    cs.note_op("copy");
    STREAMPOOL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cs.handle()), cs.context());
  }

  DeviceProperties properties(int index) override {
    STREAMPOOL_CUDA_SCOPE;
    CudaDeviceGuard guard(index);
    cudaDeviceProp prop{};
    std::string dev = "cuda:" + std::to_string(index);
    STREAMPOOL_CUDA_CHECK(cudaGetDeviceProperties(&prop, index), dev);
    DeviceProperties p;
    p.name = prop.name;
    p.compute_capability_major = prop.major;
    p.compute_capability_minor = prop.minor;
    p.multiprocessors = prop.multiProcessorCount;
    STREAMPOOL_CUDA_CHECK(cudaMemGetInfo(&p.free_memory, &p.total_memory), dev);
    return p;
  }

  BackendVersions versions() override {
    BackendVersions v;
    (void)cudaRuntimeGetVersion(&v.runtime);
    if (cudaDriverGetVersion(&v.driver) != cudaSuccess) v.driver = 0;
    return v;
  }

  std::unique_ptr<GraphExec> capture(StreamImpl& s, GraphIo& io, const std::function<void()>& body) override {
    return capture_graph(s, io, body);
  }

  // Note [Native streams]: 1 and 2 are cudaStreamLegacy and cudaStreamPerThread as they stand.
  void wait_native(StreamImpl& s, std::uintptr_t native) override { order(native_handle_of(s, native), s, true); }
  void native_wait(std::uintptr_t native, StreamImpl& s) override { order(native_handle_of(s, native), s, false); }

  void self_test(StreamImpl& s) override {
    STREAMPOOL_CUDA_SCOPE;
    constexpr int n = 1 << 20;
    auto& cs = static_cast<CudaStream&>(s);
    Device d = s.stream.device();
    CudaDeviceGuard guard(d.index);
    auto* dev = static_cast<float*>(allocate(d, n * sizeof(float)));
    std::vector<float> host(n, -1.0f);
    cudaError_t st = launch_self_test_kernel(dev, n, 0.5f, 1.0f, cs.handle());
    if (st == cudaSuccess) st = cudaMemcpyAsync(host.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost, cs.handle());
    if (st == cudaSuccess) st = cudaStreamSynchronize(cs.handle());
    (void)cudaFree(dev);
    if (st != cudaSuccess) throw_cuda("self-test", st, cs.context());
    for (int i = 0; i < n; ++i) {
      if (host[i] != static_cast<float>(i) * 0.5f + 1.0f) {
        throw Error("cuda self-test: wrong value at " + std::to_string(i) + " on " + s.stream.str());
      }
    }
  }

 private:
  std::once_flag count_once_;
  int count_ = 0;  // written once under count_once_
};

}  // namespace

Backend* cuda_backend_if_built() {
  static Backend* b = new CudaBackend();  // Note [Process lifetime]
  return b;
}

}  // namespace streampool::detail
