// Where a direct-mode request's time goes beyond the bare library call: T threads, each on its
// own pool stream, loop one op + a stream synchronize, in three variants of one request:
//   gemm        linear(x, w, b) alone (our op: checks, the output's allocation, the cuBLASLt call)
//   gemm+check  and the bench's per-request check (accumulate_max_abs_diff against a reference)
//   noop        a stream synchronize alone (the round trip)
// Compare with benchmarks/gemm_threads_probe.cc (bare cuBLASLt, the same shape).
//   streampool_direct_overhead [M N K]     default 32 4096 4096, float16
// Environment: OVERHEAD_DUR (0.3 s per point), OVERHEAD_THREADS (1,2,4,8,16), OVERHEAD_DTYPE.
// One JSON object per line.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_device.h"
#include "threads_window.h"
#include "streampool/streampool.h"

using namespace streampool;

int main(int argc, char** argv) {
  const std::int64_t m = argc > 3 ? std::atoll(argv[1]) : 32, n = argc > 3 ? std::atoll(argv[2]) : 4096,
                     k = argc > 3 ? std::atoll(argv[3]) : 4096;
  const double dur = std::getenv("OVERHEAD_DUR") ? std::atof(std::getenv("OVERHEAD_DUR")) : 0.3;
  std::vector<int> threads;
  {
    std::stringstream in(std::getenv("OVERHEAD_THREADS") ? std::getenv("OVERHEAD_THREADS") : "1,2,4,8,16");
    for (std::string t; std::getline(in, t, ',');) threads.push_back(std::atoi(t.c_str()));
  }
  const DType dt = parse_dtype(std::getenv("OVERHEAD_DTYPE") ? std::getenv("OVERHEAD_DTYPE") : "float16");
  const Device dev = bench_device();
  const Tensor w = randn({n, k}, dt, dev, 1), b = randn({n}, dt, dev, 2);
  for (const char* variant : {"noop", "gemm", "gemm+check"}) {
    const std::string v = variant;
    for (int t : threads) {
      std::atomic<bool> go{false}, stop{false};
      std::atomic<int> ready{0};
      std::vector<long> counts(t, 0);
      std::vector<std::thread> pool;
      for (int i = 0; i < t; ++i) {
        pool.emplace_back([&, i] {
          Stream s = current_stream(dev);
          const Tensor x = randn({m, k}, dt, dev, 10 + i);
          const Tensor ref = linear(x, w, b);
          const Tensor acc = zeros({1}, DType::float32, dev);
          s.synchronize();
          ++ready;
          while (!go.load()) std::this_thread::yield();
          long c = 0;
          while (!stop.load(std::memory_order_relaxed)) {
            if (v != "noop") {
              Tensor y = linear(x, w, b);
              if (v == "gemm+check") accumulate_max_abs_diff(acc, y, ref);
            }
            s.synchronize();
            ++c;
          }
          counts[i] = c;
          if (acc.to_vector<float>()[0] != 0.0f) std::fprintf(stderr, "thread %d: a result differed\n", i);
        });
      }
      while (ready.load() < t) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const double rps = run_window(pool, go, stop, counts, dur);
      std::printf("{\"probe\": \"direct_overhead\", \"variant\": \"%s\", \"dtype\": \"%s\", \"m\": %lld, \"n\": %lld, "
                  "\"k\": %lld, \"threads\": %d, \"rps\": %.0f}\n",
                  variant, std::string(dtype_name(dt)).c_str(), static_cast<long long>(m), static_cast<long long>(n),
                  static_cast<long long>(k), t, rps);
      std::fflush(stdout);
    }
  }
  return 0;
}
