// Google Benchmark: memory bandwidth of the elementwise, softmax and layer_norm kernels on large
// tensors, as a fraction of a device-to-device copy of the same size measured in the same run.
// Device: STREAMPOOL_BENCH_DEVICE (default cuda:0 where usable, else cpu). Time comes from
// device events around each batch of launches (manual time), not from the host clock.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "bench_device.h"
#include "streampool/streampool.h"

using namespace streampool;

namespace {


const Device kDev = bench_device();
double g_copy_gbps = 0;  // written by the copy benchmark, which runs first

// Times `body` `reps` times between two events; returns seconds per rep.
template <typename F>
double time_reps(int reps, F&& body) {
  Stream s = current_stream(kDev);
  Event a(true), b(true);
  a.record(s);
  for (int i = 0; i < reps; ++i) body();
  b.record(s);
  b.synchronize();
  return a.elapsed_ms(b) / 1e3 / reps;
}

template <typename F>
void run(benchmark::State& state, double bytes, F&& body, bool is_copy = false) {
  body();  // warm-up
  current_stream(kDev).synchronize();
  double gbps = 0;
  for (auto _ : state) {
    const double sec = time_reps(10, body);
    state.SetIterationTime(sec);
    gbps = bytes / sec / 1e9;
  }
  state.counters["GB/s"] = gbps;
  if (is_copy) g_copy_gbps = gbps;
  if (g_copy_gbps > 0) state.counters["of_copy"] = gbps / g_copy_gbps;
}

DType dtype_arg(const benchmark::State& s) { return s.range(1) == 0 ? DType::float32 : DType::float16; }

void BM_Copy(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Tensor a = rand({n}, DType::float32, kDev, 1), b = empty({n}, DType::float32, kDev);
  run(state, 2.0 * n * 4, [&] { b.copy_from(a); }, true);
}

void BM_Add(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const DType dt = dtype_arg(state);
  Tensor a = rand({n}, dt, kDev, 1), b = rand({n}, dt, kDev, 2);
  run(state, 3.0 * n * dtype_size(dt), [&] { (void)add(a, b); });
}

void BM_Gelu(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const DType dt = dtype_arg(state);
  Tensor a = rand({n}, dt, kDev, 1, -3, 3);
  run(state, 2.0 * n * dtype_size(dt), [&] { (void)gelu(a); });
}

void BM_Softmax(benchmark::State& state) {
  const std::int64_t n = state.range(0), cols = state.range(2);
  const DType dt = dtype_arg(state);
  Tensor a = rand({n / cols, cols}, dt, kDev, 1, -3, 3);
  run(state, 2.0 * n * dtype_size(dt), [&] { (void)softmax(a); });
}

void BM_LayerNorm(benchmark::State& state) {
  const std::int64_t n = state.range(0), cols = state.range(2);
  const DType dt = dtype_arg(state);
  Tensor a = rand({n / cols, cols}, dt, kDev, 1, -3, 3);
  Tensor w = rand({cols}, dt, kDev, 2), b = rand({cols}, dt, kDev, 3);
  run(state, 2.0 * n * dtype_size(dt), [&] { (void)layer_norm(a, w, b, 1e-5); });
}

// 64 Mi elements: 256 MiB in float32, far beyond any cache.
constexpr std::int64_t kN = 64 << 20;

}  // namespace

BENCHMARK(BM_Copy)->Args({kN})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Add)->Args({kN, 0})->Args({kN, 1})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gelu)->Args({kN, 0})->Args({kN, 1})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Softmax)
    ->Args({kN, 0, 1024})
    ->Args({kN, 1, 1024})
    ->Args({kN, 0, 4096})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LayerNorm)
    ->Args({kN, 0, 512})
    ->Args({kN, 1, 512})
    ->Args({kN, 0, 4096})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  std::printf("kernel bandwidth on %s (%s)\n", kDev.str().c_str(), device_properties(kDev).name.c_str());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
