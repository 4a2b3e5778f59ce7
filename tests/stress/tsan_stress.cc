// tsan_stress: every shared piece of the runtime used at once from many threads, every result
// checked, for ThreadSanitizer (the tsan preset runs it with --threads=31 --iterations=100; zero
// reports, no suppressions) and as a plain stress program elsewhere.
//   tsan_stress [--threads=N] [--iterations=N] [--device=cpu|cuda[:N]]
// Each iteration of each thread, on its own input with its own expected output: a module call on
// its stream (stream pool, allocator, ops), the same through a shared compiled module (graph
// cache) and through a shared BatchQueue (intake, workers, futures), a tensor handed over to
// another pool stream and read there (events, record_stream), allocator statistics and cache
// trims, settings reads, and now and then a device-wide synchronize. Exit 0 when every result
// matched and nothing threw; 1 otherwise (the first failures are printed).

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "streampool/nn/registry.h"
#include "streampool/streampool.h"

using namespace streampool;

namespace {

int parse_flag(const char* arg, const char* name, int fallback) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return fallback;
  char* end = nullptr;
  const long v = std::strtol(arg + n + 1, &end, 10);
  if (*end != '\0' || v < 1 || v > 100000) {
    std::fprintf(stderr, "tsan_stress: %s: '%s' is not a whole number from 1 to 100000\n", name, arg + n + 1);
    std::exit(2);
  }
  return static_cast<int>(v);
}

bool same(const std::vector<float>& a, const std::vector<float>& b) { return a == b; }
// A batch of other requests' rows rounds its GEMM as a larger M does: near, not bitwise.
bool near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= 1e-4f)) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 31, iterations = 100;
  std::string device_name = "cpu";
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--threads=", 10) == 0) threads = parse_flag(a, "--threads", threads);
    else if (std::strncmp(a, "--iterations=", 13) == 0) iterations = parse_flag(a, "--iterations", iterations);
    else if (std::strncmp(a, "--device=", 9) == 0) device_name = a + 9;
    else {
      std::fprintf(stderr, "usage: tsan_stress [--threads=N] [--iterations=N] [--device=cpu|cuda[:N]] (unknown '%s')\n", a);
      return 2;
    }
  }
  try {
    const Device dev = Device::parse(device_name);
    check_device(dev);
    const DType f = DType::float32;
    // A small MLP shared by every thread, directly, compiled and behind a queue.
    std::shared_ptr<nn::Module> mlp = nn::make_module(
        "mlp", R"({"sizes": [64, 128, 64], "activation": "gelu"})");
    nn::StateDict sd;
    std::uint64_t seed = 11;
    for (const auto& [name, shape] : mlp->parameters()) sd[name] = rand(shape, f, Device(DeviceKind::cpu), seed++, -0.1, 0.1);
    mlp->load_state_dict(sd, dev, f);
    std::shared_ptr<const nn::Module> model = mlp;
    std::shared_ptr<CompiledModule> compiled = compile(model);
    BatchOptions bo;
    bo.max_batch_size = 16;
    bo.num_workers = 2;
    bo.name = "tsan_stress";
    BatchQueue queue(model, bo);

    // Thread t's input and expected output, computed here one at a time.
    std::vector<Tensor> inputs;
    std::vector<std::vector<float>> expected;
    for (int t = 0; t < threads; ++t) {
      inputs.push_back(randn({2, 64}, f, dev, 1000 + static_cast<std::uint64_t>(t)));
      expected.push_back(model->forward(nn::Input(inputs.back())).y.to_vector<float>());
    }
    synchronize(dev);

    std::atomic<int> wrong{0}, errors{0};
    std::mutex mu;  // guards `messages`
    std::vector<std::string> messages;
    auto note = [&](std::string m) {
      std::lock_guard<std::mutex> g(mu);
      if (messages.size() < 10) messages.push_back(std::move(m));
    };
    std::latch start(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        try {
          Tensor x = empty(inputs[t].shape(), f, dev);
          x.copy_from(inputs[t]);  // on this thread's stream
          const std::vector<float>& want = expected[t];
          start.arrive_and_wait();
          for (int i = 0; i < iterations; ++i) {
            const std::string where = "thread " + std::to_string(t) + " iteration " + std::to_string(i) + ": ";
            // Direct, compiled, batched.
            if (!same(model->forward(nn::Input(x)).y.to_vector<float>(), want)) ++wrong, note(where + "direct result differs");
            if (!same((*compiled)(nn::Input(x)).y.to_vector<float>(), want)) ++wrong, note(where + "compiled result differs");
            BatchFuture fut = queue.submit(nn::Input(x));
            if (!near(fut.get().y.to_vector<float>(), want)) ++wrong, note(where + "batched result differs");
            // Made here, read on another pool stream after hand_over.
            Tensor y = model->forward(nn::Input(x)).y;
            Stream other = stream_from_pool(dev);
            hand_over(y, other);
            {
              StreamGuard g(other);
              if (!same(add(y, zeros({1}, f, dev)).to_vector<float>(), want)) ++wrong, note(where + "handed-over result differs");
            }
            y = Tensor();  // freed while `other` may still read it: record_stream keeps the block
            Event e;
            e.record(current_stream(dev));
            (void)e.query();
            (void)memory_stats(dev);
            (void)streams_per_device();
            if (i % 10 == t % 10) empty_cache(dev);
            if (i % 25 == 0) synchronize(dev);
          }
        } catch (const std::exception& e) {
          ++errors;
          note("thread " + std::to_string(t) + ": " + e.what());
        }
      });
    }
    for (auto& th : pool) th.join();
    queue.close();
    std::printf("tsan_stress: %s, %d threads x %d iterations: %d wrong results, %d errors\n", dev.str().c_str(), threads,
                iterations, wrong.load(), errors.load());
    for (const auto& m : messages) std::printf("  %s\n", m.c_str());
    return wrong == 0 && errors == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tsan_stress: %s\n", e.what());
    return 1;
  }
}
