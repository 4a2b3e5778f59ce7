// Child-process scenarios for the tests: `streampool_test_helper SCENARIO [DEVICE]`.
// Exit status 0 means the scenario behaved; anything else (or a signal) is a failure.

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;
using streampool::test::Work;

namespace {

Device g_device;

// Buffers that in-flight work may still write at exit stay reachable here (not freed, and not
// reported as leaks by LeakSanitizer).
std::mutex g_keep_mu;                                 // guards g_keep
std::vector<Work*>* g_keep = new std::vector<Work*>;  // never destroyed
std::vector<Tensor>* g_kept_tensors = new std::vector<Tensor>;  // guarded by g_keep_mu; never destroyed

void keep_tensor(const Tensor& t) {
  std::lock_guard<std::mutex> lock(g_keep_mu);
  g_kept_tensors->push_back(t);
}

Work* kept_work(std::size_t n) {
  auto* w = new Work(g_device, n);
  std::lock_guard<std::mutex> lock(g_keep_mu);
  g_keep->push_back(w);
  return w;
}

int busy() {
  // Threads leave their streams full of work; main returns without waiting for any of it.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      auto* w = kept_work(1 << 16);
      Stream s = current_stream(g_device);
      for (int i = 0; i < 20; ++i) w->submit(s, test::unique_scale(t, i));
    });
  }
  for (auto& th : threads) th.join();
  auto* w = kept_work(1 << 16);
  Stream s = current_stream(g_device);
  for (int i = 0; i < 20; ++i) w->submit(s, test::unique_scale(99, i));
  return 0;
}

int atexit_sync() {
  static Work* w = kept_work(1 << 16);
  std::atexit([] {
    synchronize(g_device);
    Stream s = current_stream(g_device);
    if (w->check(s, 0.5f) != 0) std::_Exit(7);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      auto* mine = kept_work(1 << 16);
      Stream s = current_stream(g_device);
      for (int i = 0; i < 10; ++i) mine->submit(s, test::unique_scale(t, i));
    });
  }
  for (auto& th : threads) th.join();
  w->submit(current_stream(g_device), 0.5f);
  return 0;
}

int midwork() {
  // Eight threads keep submitting and checking while main calls exit().
  for (int t = 0; t < 8; ++t) {
    std::thread([t] {
      try {
        auto* w = kept_work(1 << 14);
        for (int i = 0;; ++i) {
          if (w->run_once(test::unique_scale(t, i % 500)) != 0) std::_Exit(9);
        }
      } catch (const streampool::Error&) {
        // The runtime may refuse work once the process is shutting down: that is fine.
      }
    }).detach();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::exit(0);
}

// Exit while CPU GEMMs run or are queued (OpenBLAS tears down in _dl_fini: Note [CPU exit gate]).
int gemm_return() {
  // One large GEMM still running when main returns.
  Tensor x = randn({1024, 1024}, DType::float32, g_device, 1);
  keep_tensor(linear(x, x));  // outlives main: the GEMM may still write it
  return 0;
}

int gemm_exit_midwork() {
  // exit() while eight threads run ops that include GEMMs.
  for (int t = 0; t < 8; ++t) {
    std::thread([t] {
      try {
        Tensor w = randn({256, 256}, DType::float32, g_device, 100 + t);
        Tensor x = randn({64, 256}, DType::float32, g_device, 200 + t);
        for (;;) {
          Tensor y = gelu(linear(x, w));
          Tensor z = softmax(matmul(y, w));
          (void)z;
        }
      } catch (const streampool::Error&) {
      }
    }).detach();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::exit(0);
}

int gemm_joined() {
  // Eight workers each queue five GEMMs and are joined without synchronizing; main returns.
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t] {
      Tensor w = randn({512, 512}, DType::float32, g_device, 300 + t);
      Tensor x = randn({256, 512}, DType::float32, g_device, 400 + t);
      for (int i = 0; i < 5; ++i) keep_tensor(linear(x, w));
    });
  }
  for (auto& th : threads) th.join();
  return 0;
}

void sync_at_exit() {
  const bool trace = std::getenv("STREAMPOOL_HELPER_TRACE") != nullptr;
  if (trace) std::fprintf(stderr, "atexit handler: synchronize\n");
  try {
    synchronize(g_device);
    if (trace) std::fprintf(stderr, "atexit handler: synchronized\n");
  } catch (const streampool::Error& e) {
    // Work refused or dropped because the process is exiting: allowed, a crash is not.
    if (trace) std::fprintf(stderr, "atexit handler: %s\n", e.what());
  }
}

int gemm_atexit() {
  // An atexit handler synchronizes the device while another thread loops GEMMs.
  // STREAMPOOL_HELPER_VARIANT (diagnosis): "late" registers the handler after the device is in
  // use, "none" registers none, "sleep" registers none and lets the loop run 50 ms, "sync" makes the loop synchronize every iteration.
  const char* v = std::getenv("STREAMPOOL_HELPER_VARIANT");
  const std::string variant = v ? v : "";
  if (variant.empty() || variant == "sync") std::atexit(sync_at_exit);  // before any device use
  static std::atomic<bool> started{false};  // static: the thread outlives this frame
  static bool sync_each = variant == "sync";
  std::thread([] {
    try {
      Tensor w = randn({256, 256}, DType::float32, g_device, 500);
      Tensor x = randn({64, 256}, DType::float32, g_device, 501);
      for (;;) {
        Tensor y = linear(x, w);
        if (sync_each) current_stream(g_device).synchronize();
        started = true;
        (void)y;
      }
    } catch (const streampool::Error&) {
    }
  }).detach();
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (variant == "late") std::atexit(sync_at_exit);
  if (variant == "sleep") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (std::getenv("STREAMPOOL_HELPER_TRACE")) std::fprintf(stderr, "main returns\n");
  return 0;
}

// Exit while compiled modules replay and capture (issue "graph path": exit with live graphs
// and with a capture in progress). Four threads replay their own signature in a loop; two
// threads build a new signature (plan and, on CUDA, capture) on every call; main returns.
int graph_exit() {
  // Never destroyed: the threads use it while the process exits (as keep_tensor's tensors).
  static CompiledModule* compiled = nullptr;
  std::shared_ptr<nn::Module> m = nn::make_module("mlp", R"({"sizes": [64, 128, 32], "activation": "gelu"})");
  nn::StateDict sd;
  std::uint64_t seed = 700;
  for (const auto& [name, shape] : m->parameters()) sd[name] = randn(shape, DType::float32, Device(DeviceKind::cpu), seed++);
  m->load_state_dict(sd, g_device);
  compiled = new CompiledModule(m);
  static std::atomic<int> started{0};
  for (int t = 0; t < 6; ++t) {
    std::thread([t] {
      try {
        Tensor x = randn({t + 1, 64}, DType::float32, g_device, 800 + t);
        for (std::int64_t i = 0;; ++i) {
          // Threads 4 and 5 ask for a new batch size every call: a build (capture) each time.
          Tensor in = t < 4 ? x : randn({1 + (i % 200) + 8 * (t - 3), 64}, DType::float32, g_device, 900 + t);
          keep_tensor((*compiled)(in).y);
          if (i == 2) ++started;
        }
      } catch (const streampool::Error&) {
      }
    }).detach();
  }
  while (started < 6) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

// streampool::begin_exit (process_exit.h) while six threads each make a first call of a new
// GEMM shape on every iteration (on CUDA, a cuBLASLt heuristic each: the window in which exit()
// alone crashed Python daemon threads): on CUDA another thread's next call must be refused,
// while the calling thread's own work goes on; then main returns while they run.
int begin_exit_scenario() {
  static std::atomic<int> started{0};
  static std::atomic<bool> refused{false};
  for (int t = 0; t < 6; ++t) {
    std::thread([t] {
      try {
        Tensor w = randn({48, 64}, DType::float32, g_device, 600 + t);
        for (std::int64_t i = 0;; ++i) {
          Tensor x = randn({1 + (i * 6 + t) % 997, 64}, DType::float32, g_device, 650 + t);
          keep_tensor(linear(x, w));
          if (i == 1) ++started;
        }
      } catch (const streampool::Error&) {
        refused = true;
      }
    }).detach();
  }
  while (started < 6) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  begin_exit();
  if (g_device.kind == DeviceKind::cuda) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!refused && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!refused) return 8;  // the gate did not close
  }
  Tensor w = full({8, 4}, 0.5, DType::float32, g_device);
  Tensor x = full({2, 4}, 2.0, DType::float32, g_device);
  const std::vector<float> y = linear(x, w).to_vector<float>();  // the caller is still served
  for (float v : y)
    if (v != 4.0f) return 9;
  return y.size() == 16 ? 0 : 9;
}

std::shared_ptr<nn::Module> small_mlp() {
  std::shared_ptr<nn::Module> m = nn::make_module("mlp", R"({"sizes": [64, 128, 32], "activation": "gelu"})");
  nn::StateDict sd;
  std::uint64_t seed = 700;
  for (const auto& [name, shape] : m->parameters()) sd[name] = randn(shape, DType::float32, Device(DeviceKind::cpu), seed++);
  m->load_state_dict(sd, g_device);
  return m;
}

// Return from main while a live BatchQueue serves six client threads (issue "BatchQueue":
// process exit with a live queue is safe). The queue is never destroyed: the clients use it
// while the process exits, until begin_exit closes it (Note [Queues at exit]) and they end. A
// global holds it, so that it stays reachable once they have (LeakSanitizer).
BatchQueue* volatile g_live_queue = nullptr;  // volatile: a store the compiler must keep
int queue_exit_live() {
  auto* q = g_live_queue = new BatchQueue(small_mlp(), [] {
    BatchOptions o;
    o.max_batch_size = 16;
    o.num_workers = 2;
    return o;
  }());
  static std::atomic<int> started{0};
  for (int t = 0; t < 6; ++t) {
    std::thread([q, t] {
      try {
        Tensor x = randn({1, 64}, DType::float32, Device(DeviceKind::cpu), 800 + t);
        current_stream(Device(DeviceKind::cpu)).synchronize();
        for (int i = 0;; ++i) {
          std::vector<BatchFuture> fs;
          for (int k = 0; k < 4; ++k) fs.push_back(q->submit(x));
          for (auto& f : fs) (void)f.get();
          if (i == 2) ++started;
        }
      } catch (const streampool::Error&) {
      }
    }).detach();
  }
  while (started < 6) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

// Return from main with accepted requests still waiting in a static BatchQueue: its destructor,
// run by exit(), must drain them. An atexit handler registered before the queue was made runs
// after its destructor and fails the process (status 3) unless every request ran.
std::vector<BatchFuture>* g_exit_futures = new std::vector<BatchFuture>;  // never destroyed
void check_exit_futures() {
  for (auto& f : *g_exit_futures) {
    if (f.status() != RequestStatus::done) {  // drained means run, not failed by close()
      std::fprintf(stderr, "helper: a request was left unfulfilled or not run at exit: %s\n", to_string(f.status()));
      std::_Exit(3);
    }
  }
}
int queue_exit_static() {
  std::shared_ptr<nn::Module> m = small_mlp();
  std::atexit(check_exit_futures);
  static BatchQueue q(m, [] {
    BatchOptions o;
    o.max_batch_size = 8;
    return o;
  }());
  Tensor x = randn({1, 64}, DType::float32, Device(DeviceKind::cpu), 900);
  current_stream(Device(DeviceKind::cpu)).synchronize();
  for (int i = 0; i < 400; ++i) g_exit_futures->push_back(q.submit(x));
  return 0;
}

// begin_exit closes every live queue and lets it finish what it had accepted first (Note [Queues
// at exit]): requests still waiting for company (max_delay) have run when it returns, while
// CUDA serves the workers, and the queue refuses new ones.
int begin_exit_drains_queue() {
  BatchOptions o;
  o.max_batch_size = 64;
  o.max_delay = std::chrono::milliseconds(800);
  BatchQueue q(small_mlp(), o);
  Tensor x = randn({1, 64}, DType::float32, Device(DeviceKind::cpu), 910);
  current_stream(Device(DeviceKind::cpu)).synchronize();
  std::vector<BatchFuture> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(q.submit(x));
  begin_exit();
  for (auto& f : fs) {
    if (f.status() != RequestStatus::done) {
      std::fprintf(stderr, "helper: after begin_exit a request is %s\n", to_string(f.status()));
      return 3;
    }
  }
  try {
    (void)q.submit(x);
    std::fprintf(stderr, "helper: the queue took a request after begin_exit\n");
    return 4;
  } catch (const QueueClosedError&) {
  }
  return 0;
}

int exhaust() {
  // Run with STREAMPOOL_STREAMS_PER_DEVICE=2 STREAMPOOL_POOL_EXHAUSTED=error: one pool stream.
  std::atomic<bool> holding{false}, done{false};
  std::thread holder([&] {
    (void)current_stream(g_device);
    holding = true;
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!holding) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int rc = 1;
  std::thread second([&] {
    try {
      (void)current_stream(g_device);
      std::cout << "second thread got a stream\n";
    } catch (const PoolExhaustedError& e) {
      std::cout << "PoolExhaustedError: " << e.what() << "\n";
      rc = 0;
    }
  });
  second.join();
  done = true;
  holder.join();
  return rc;
}

}  // namespace

// A crash prints where it happened (the static-destruction tests look for crashes at exit).
void on_crash(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  const char msg[] = "helper: fatal signal, backtrace:\n";
  (void)!write(2, msg, sizeof msg - 1);
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

int main(int argc, char** argv) {
  // An alternate stack, so that a stack overflow is reported too.
  static char alt[1 << 16];
  stack_t ss{};
  ss.ss_sp = alt;
  ss.ss_size = sizeof alt;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  signal(SIGABRT, on_crash);
  signal(SIGBUS, on_crash);
  if (argc < 2) {
    std::cerr << "usage: streampool_test_helper SCENARIO [DEVICE]\n";
    return 64;
  }
  std::string scenario = argv[1];
  try {
    g_device = Device::parse(argc > 2 ? argv[2] : "cpu");
    if (scenario == "selftest") {
      self_test(g_device);
      std::cout << "selftest ok\n";
      return 0;
    }
    if (scenario == "busy") return busy();
    if (scenario == "atexit") return atexit_sync();
    if (scenario == "midwork") return midwork();
    if (scenario == "exhaust") return exhaust();
    if (scenario == "gemm_return") return gemm_return();
    if (scenario == "gemm_exit_midwork") return gemm_exit_midwork();
    if (scenario == "gemm_joined") return gemm_joined();
    if (scenario == "gemm_atexit") return gemm_atexit();
    if (scenario == "graph_exit") return graph_exit();
    if (scenario == "begin_exit") return begin_exit_scenario();
    if (scenario == "queue_exit_live") return queue_exit_live();
    if (scenario == "queue_exit_static") return queue_exit_static();
    if (scenario == "begin_exit_drains_queue") return begin_exit_drains_queue();
    if (scenario == "nocache") {
      // STREAMPOOL_NO_CACHING=1: every allocation reaches the device, and memory goes back.
      for (int i = 0; i < 20; ++i) {
        Tensor t = full({1000}, i, DType::float32, g_device);
        if (t.to_vector<float>()[999] != static_cast<float>(i)) return 5;
      }
      synchronize(g_device);
      empty_cache(g_device);
      MemoryStats s = memory_stats(g_device);
      std::cout << "allocations=" << s.allocations << " device_allocations=" << s.device_allocations
                << " reserved=" << s.reserved_bytes << "\n";
      return s.device_allocations == s.allocations && s.reserved_bytes == 0 ? 0 : 6;
    }
    if (scenario == "alloclog") {
      // STREAMPOOL_ALLOCATOR_LOG=1: one line per segment taken from the device, none for a
      // segment moved from another stream. 12 MiB requests get segments of their own.
      const std::size_t bytes = 12u << 20;
      Stream a(g_device, 1), b(g_device, 2);
      { DataPtr p = allocate(g_device, bytes, &a); }     // a new segment: one line
      DataPtr q = allocate(g_device, bytes, &b);          // moved from stream 1: no line
      DataPtr r = allocate(g_device, bytes, &b);          // a new segment: one line
      synchronize(g_device);
      std::cout << "device_allocations=" << memory_stats(g_device).device_allocations << "\n";
      return 0;
    }
    if (scenario == "limit") {
      if (memory_limit(g_device) != (8u << 20)) return 7;
      Tensor ok = empty({1 << 20}, DType::float32, g_device);  // 4 MiB fits
      try {
        Tensor too_much = empty({2 << 20}, DType::float32, g_device);
        return 8;
      } catch (const OutOfMemoryError& e) {
        std::cout << e.what() << "\n";
        return 0;
      }
    }
    if (scenario == "streams") {
      std::cout << "streams=" << streams_per_device() << "\n";
      return 0;
    }
    if (scenario == "policy") {
      std::cout << "policy=" << to_string(pool_exhausted_policy()) << "\n";
      return 0;
    }
    if (scenario == "current") {
      std::cout << "stream=" << current_stream(g_device) << "\n";
      return 0;
    }
  } catch (const ConfigError& e) {
    std::cout << "ConfigError: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cout << "error: " << e.what() << "\n";
    return 4;
  }
  std::cerr << "unknown scenario " << scenario << "\n";
  return 64;
}
