// CPU backend: a stream is an ordered asynchronous queue served by its own worker thread, so
// stream semantics (ordering, events, cross-stream hazards) are real without a GPU.

#include <sys/sysinfo.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_load.h"
#include "backend/registry.h"
#include "streampool/error.h"

namespace streampool::detail {
namespace {

using Clock = std::chrono::steady_clock;

// Note [CPU exit gate]
// OpenBLAS frees its buffers and threads in an ELF destructor, run by _dl_fini after every
// atexit handler and static destructor; a stream worker inside a GEMM at that moment crashes
// (SIGSEGV or SIGBUS, nearly every time). The dynamic loader runs a library's destructors
// before those of the libraries it depends on, so libstreampool's own destructor
// (close_cpu_gate below) runs after all user exit code (atexit handlers may still synchronize)
// and before OpenBLAS tears down. It closes the gate: a worker finishes the task it is running
// and never starts another (queued work is dropped: the process is ending), and the destructor
// waits for the tasks in flight. A task blocked in a cross-stream event wait does not count as
// in flight: its producer may be parked by the gate and it touches no library state.
//
// Shared state, all lock-free: g_gate_closed (set once, by the exiting thread) and
// g_tasks_running (tasks between their start check and their end). Both are seq_cst, so a
// worker that counted itself in before seeing the gate closed is seen by the closer.
std::atomic<bool> g_gate_closed{false};
std::atomic<int> g_tasks_running{0};
thread_local bool tls_in_task = false;  // the calling thread is a worker running a task

[[noreturn]] void park_forever() {
  // The process is exiting: this worker never runs again. Sleeping, not spinning.
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// Enters a task; parks the worker for good once the gate is closed.
void enter_task() {
  g_tasks_running.fetch_add(1, std::memory_order_seq_cst);
  if (g_gate_closed.load(std::memory_order_seq_cst)) {
    g_tasks_running.fetch_sub(1, std::memory_order_seq_cst);
    park_forever();
  }
  tls_in_task = true;
}

}  // namespace

int cpu_tasks_running() { return g_tasks_running.load(std::memory_order_relaxed); }

namespace {

void leave_task() {
  tls_in_task = false;
  g_tasks_running.fetch_sub(1, std::memory_order_seq_cst);
}

__attribute__((destructor)) void close_cpu_gate() {
  g_gate_closed.store(true, std::memory_order_seq_cst);
  // exit() called from inside a task: that task is this thread, and it is not coming back.
  const int own = tls_in_task ? 1 : 0;
  // Long enough for any real GEMM to finish; a user task that never ends cannot hold exit forever.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (g_tasks_running.load(std::memory_order_seq_cst) > own && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// One record of a CpuEvent: completes when the stream's worker reaches it.
struct CpuMarker {
  std::mutex mu;               // guards done, error, when
  std::condition_variable cv;  // signalled once at completion
  bool done = false;
  std::exception_ptr error;    // the stream's pending error when the marker ran
  Clock::time_point when;

  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
};

class CpuStream final : public StreamImpl {
 public:
  using StreamImpl::StreamImpl;

  void enqueue_host(const char* op, std::function<void()> task) override {
    note_op(op);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!worker_started_) {
        // Never joined: Note [Process lifetime]. Started lazily, on the first submission.
        std::thread([this] { run(); }).detach();
        worker_started_ = true;
      }
      queue_.push_back(Task{op, std::move(task)});
      ++submitted_;
    }
    work_cv_.notify_one();
  }

  bool query() override {
    std::lock_guard<std::mutex> lock(mu_);
    return completed_ == submitted_;
  }

  void synchronize() override {
    if (std::this_thread::get_id() == worker_id_.load(std::memory_order_relaxed)) {
      throw InvalidArgument("synchronize of " + stream.str() +
                            " from a task running on that same stream would wait for itself forever");
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      const std::uint64_t target = submitted_;
      ++waiters_;
      done_cv_.wait(lock, [&] { return completed_ >= target; });
      --waiters_;
    }
    if (auto e = errors.take()) std::rethrow_exception(e);
  }

  void wait(EventImpl& event) override;
  void order_after(EventImpl& event) override;

  void* native_handle() override { return nullptr; }

  void enqueue_marker(std::shared_ptr<CpuMarker> m) {
    enqueue_host("event_record", [this, m] {
      std::lock_guard<std::mutex> lock(m->mu);
      m->error = errors.peek();
      m->when = Clock::now();
      m->done = true;
      m->cv.notify_all();
    });
  }

 private:
  struct Task {
    const char* op;
    std::function<void()> fn;
  };

  void run() {
    worker_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      enter_task();  // Note [CPU exit gate]: never returns once the process is exiting
      try {
        task.fn();
      } catch (...) {
        errors.set_if_empty(make_async_error(task.op, stream, std::current_exception()));
      }
      task.fn = nullptr;  // release captures before reporting completion
      leave_task();
      bool notify;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++completed_;
        notify = waiters_ > 0;
      }
      if (notify) done_cv_.notify_all();
    }
  }

  std::mutex mu_;                   // guards queue_, submitted_, completed_, waiters_, worker_started_
  std::condition_variable work_cv_;  // worker waits for tasks
  std::condition_variable done_cv_;  // synchronize waits for completions
  std::deque<Task> queue_;
  std::uint64_t submitted_ = 0;
  std::uint64_t completed_ = 0;
  int waiters_ = 0;
  bool worker_started_ = false;
  std::atomic<std::thread::id> worker_id_{};  // detects synchronize from the stream's own task
};

class CpuEvent final : public EventImpl {
 public:
  using EventImpl::EventImpl;

  void record(StreamImpl& s) override {
    auto m = std::make_shared<CpuMarker>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      latest_ = m;
    }
    static_cast<CpuStream&>(s).enqueue_marker(std::move(m));
  }

  bool query() override {
    auto m = latest();
    if (!m) return true;
    std::lock_guard<std::mutex> lock(m->mu);
    return m->done;
  }

  void synchronize() override {
    auto m = latest();
    if (!m) return;
    m->wait();
    if (m->error) std::rethrow_exception(m->error);
  }

  double elapsed_ms(EventImpl& end_impl) override {
    auto a = latest();
    auto b = static_cast<CpuEvent&>(end_impl).latest();
    for (auto* m : {a.get(), b.get()}) {
      std::lock_guard<std::mutex> lock(m->mu);
      if (!m->done) throw InvalidArgument("Event::elapsed_ms: an event has not completed yet");
    }
    return std::chrono::duration<double, std::milli>(b->when - a->when).count();
  }

  std::shared_ptr<CpuMarker> latest() {
    std::lock_guard<std::mutex> lock(mu_);
    return latest_;
  }

 private:
  std::mutex mu_;  // guards latest_
  std::shared_ptr<CpuMarker> latest_;
};

void CpuStream::wait(EventImpl& event) {
  auto m = static_cast<CpuEvent&>(event).latest();
  if (!m) return;
  // Blocking the worker is the CPU analogue of a GPU stream waiting on an event. No cycle is
  // possible: the marker was enqueued before this wait, and queues are FIFO.
  enqueue_host("stream_wait_event", [this, m] {
    // Not in flight while blocked (Note [CPU exit gate]): the producer may never run again.
    leave_task();
    m->wait();
    enter_task();
    if (m->error) {
      std::string reason = "unknown";
      try {
        std::rethrow_exception(m->error);
      } catch (const std::exception& e) {
        reason = e.what();
      } catch (...) {
      }
      throw Error("waited on an event recorded after a failure: " + reason);
    }
  });
}

void CpuStream::order_after(EventImpl& event) {
  auto m = static_cast<CpuEvent&>(event).latest();
  if (!m) return;
  enqueue_host("stream_order_after", [this, m] {
    leave_task();  // as in wait: not in flight while blocked
    m->wait();
    enter_task();
  });
}

class CpuBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::cpu; }
  int device_count() override { return 1; }

  std::unique_ptr<StreamImpl> create_stream(const Stream& s) override { return std::make_unique<CpuStream>(s); }

  std::unique_ptr<EventImpl> create_event(const Device& d, bool timing) override {
    return std::make_unique<CpuEvent>(d, timing);
  }

  void* allocate(const Device& d, std::size_t bytes) override {
    void* p = try_allocate(d, bytes);
    if (!p) throw Error("cpu: allocation of " + std::to_string(bytes) + " bytes failed");
    return p;
  }

  void* try_allocate(const Device&, std::size_t bytes) override {
    constexpr std::size_t kAlign = 64;  // a cache line; also enough for any SIMD load
    std::size_t rounded = (std::max<std::size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    if (rounded < bytes) return nullptr;  // overflow
    return std::aligned_alloc(kAlign, rounded);
  }

  void deallocate(const Device&, void* p) override { std::free(p); }

  void copy_async(void* dst, const void* src, std::size_t bytes, StreamImpl& s) override {
    s.enqueue_host("copy", [dst, src, bytes] { std::memcpy(dst, src, bytes); });
  }

  DeviceProperties properties(int) override {
    DeviceProperties p;
    p.name = cpu_model_name();
    struct sysinfo info {};
    if (sysinfo(&info) == 0) {
      p.total_memory = static_cast<std::size_t>(info.totalram) * info.mem_unit;
      p.free_memory = static_cast<std::size_t>(info.freeram) * info.mem_unit;
    }
    p.multiprocessors = static_cast<int>(std::thread::hardware_concurrency());
    return p;
  }

  BackendVersions versions() override { return {}; }

  void self_test(StreamImpl& s) override {
    constexpr int n = 1 << 16;
    Device d = s.stream.device();
    auto* a = static_cast<float*>(allocate(d, n * sizeof(float)));
    auto* b = static_cast<float*>(allocate(d, n * sizeof(float)));
    std::vector<float> host(n, -1.0f);
    s.enqueue_host("self_test_fill", [a] {
      for (int i = 0; i < n; ++i) a[i] = static_cast<float>(i) * 0.5f + 1.0f;
    });
    copy_async(b, a, n * sizeof(float), s);
    copy_async(host.data(), b, n * sizeof(float), s);
    try {
      s.synchronize();
    } catch (...) {
      deallocate(d, a);
      deallocate(d, b);
      throw;
    }
    deallocate(d, a);
    deallocate(d, b);
    for (int i = 0; i < n; ++i) {
      if (host[i] != static_cast<float>(i) * 0.5f + 1.0f) {
        throw Error("cpu self-test: wrong value at " + std::to_string(i) + " on " + s.stream.str());
      }
    }
  }

 private:
  static std::string cpu_model_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("model name", 0) == 0) {
        auto pos = line.find(':');
        if (pos != std::string::npos) return line.substr(line.find_first_not_of(' ', pos + 1));
      }
    }
    return "CPU";
  }
};

}  // namespace

Backend& cpu_backend() {
  static Backend* b = new CpuBackend();  // Note [Process lifetime]
  return *b;
}

}  // namespace streampool::detail
