// Batched mode (bench/WORKLOADS.md): T client threads submit batch-1 requests to one BatchQueue,
// closed loop (one in flight per client) or open loop (a window of inflight / T per client).
// Every request uses one of K distinct inputs and is checked against that input's own expected
// output (one direct forward each, computed before the clock starts), so a result swapped
// between requests shows as a mismatch. Small inputs travel from the host (as a server's
// requests do) and small results come back to it; large ones (encoder, conv1d: 128 KB a
// request) stay on the device, and results too large to compare on the host are compared there.

#include "bench_batched.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <thread>

#include "streampool/streampool.h"

namespace streampool::tools {

namespace {

using Clock = std::chrono::steady_clock;

Histogram minus(const Histogram& a, const Histogram& b) {
  Histogram d = a;
  for (std::size_t i = 0; i < d.counts.size() && i < b.counts.size(); ++i) d.counts[i] -= b.counts[i];
  d.count -= b.count;
  d.sum -= b.sum;
  return d;
}

// Largest |a - b| over a contiguous host tensor of any float dtype and its expected values.
double host_max_diff(const Tensor& t, const std::vector<float>& want) {
  const std::size_t n = want.size();
  double e = 0;
  auto each = [&](auto get) {
    for (std::size_t i = 0; i < n; ++i) e = std::max(e, static_cast<double>(std::fabs(get(i) - want[i])));
  };
  switch (t.dtype()) {
    case DType::float32: {
      const float* p = t.data<float>();
      each([&](std::size_t i) { return p[i]; });
      break;
    }
    case DType::float16: {
      const auto* p = static_cast<const std::uint16_t*>(t.data_ptr());
      each([&](std::size_t i) { return half_to_float(p[i]); });
      break;
    }
    case DType::bfloat16: {
      const auto* p = static_cast<const std::uint16_t*>(t.data_ptr());
      each([&](std::size_t i) { return bfloat16_to_float(p[i]); });
      break;
    }
    default:
      throw Error("bench: a result of dtype " + std::string(dtype_name(t.dtype())));
  }
  return e;
}

struct Sample {
  nn::Input in;                 // where the queue takes it from (host or device)
  std::vector<float> expected;  // host check
  Tensor ref;                   // device check
};

}  // namespace

Result run_batched(const bench::Workload& w, const BatchedConfig& c) {
  Result r;
  r.model = w.name;
  r.dtype = std::string(dtype_name(w.dtype));
  r.mode = "batched";
  r.loop = c.open ? "open" : "closed";
  r.threads = c.clients;
  r.inflight = c.open ? std::max(c.inflight, c.clients) : c.clients;
  r.workers = c.workers;
  r.max_batch = c.max_batch;
  const Device dev = w.device;
  const Device host(DeviceKind::cpu);
  const bool gpu = dev.kind != DeviceKind::cpu;
  const int per_client = c.open ? std::max(1, r.inflight / c.clients) : 1;
  r.inflight = per_client * c.clients;

  // One request's input size decides where it lives (see the file comment).
  std::size_t in_bytes = dtype_size(w.ids ? DType::int64 : w.dtype);
  for (auto d : w.shape) in_bytes *= static_cast<std::size_t>(d);
  const bool device_inputs = gpu && in_bytes > 16384;

  const int K = std::clamp(2 * r.inflight, 64, 1024);
  std::vector<Sample> samples(static_cast<std::size_t>(K));
  bool device_results = device_inputs;
  for (int k = 0; k < K; ++k) {
    nn::Input in = w.input(k);
    if (c.max_len > 0) {  // mixed lengths along dimension 1
      const std::int64_t span = c.max_len - c.min_len + 1;
      const std::int64_t len = std::min<std::int64_t>(in.x.size(1), c.min_len + (static_cast<std::int64_t>(k) * 37) % span);
      in.x = in.x.slice(1, 0, len).contiguous();
    }
    nn::Output single = w.model->forward(in);
    Sample& s = samples[static_cast<std::size_t>(k)];
    if (single.y.numel() > 4096) device_results = gpu;  // compare where it is
    s.ref = single.y;
    s.in = nn::Input(device_inputs ? in.x : in.x.to(host));
  }
  for (auto& s : samples) {
    if (!device_results || !gpu) s.expected = s.ref.to_float_vector();
    if (!device_results) s.ref = Tensor();
  }
  current_stream(dev).synchronize();
  current_stream(host).synchronize();

  BatchOptions o;
  o.max_batch_size = c.max_batch;
  o.num_workers = c.workers;
  o.max_delay = std::chrono::microseconds(c.max_delay_us);
  o.graph = c.graph;
  o.length_buckets = c.length_buckets;
  if (device_results && !device_inputs) o.output_device = dev;
  o.name = w.name;
  std::unique_ptr<BatchQueue> queue;
  try {
    queue = std::make_unique<BatchQueue>(w.model, o);
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = e.what();
    return r;
  }

  const int T = c.clients;
  std::vector<std::vector<double>> lats(static_cast<std::size_t>(T));
  std::vector<double> host_err(static_cast<std::size_t>(T), 0);
  std::vector<Tensor> accs(static_cast<std::size_t>(T));
  std::vector<std::string> errors(static_cast<std::size_t>(T));
  std::atomic<int> phase{0};  // 0 warm-up, 1 timed, 2 stop
  std::barrier warm(T + 1);
  std::vector<std::thread> pool;
  for (int t = 0; t < T; ++t) {
    pool.emplace_back([&, t] {
      bool arrived = false;
      try {
        if (device_results) accs[t] = zeros({1}, DType::float32, dev);
        struct Slot {
          BatchFuture f;
          int k = 0;
          Clock::time_point at;
        };
        std::vector<Slot> ring(static_cast<std::size_t>(per_client));
        int next = t * 131;  // each client its own sequence of samples
        auto submit = [&](Slot& s) {
          s.k = next++ % K;
          s.at = Clock::now();
          s.f = queue->submit(samples[static_cast<std::size_t>(s.k)].in);
        };
        auto check = [&](const Slot& s) {
          nn::Output out = s.f.get();
          const Sample& sm = samples[static_cast<std::size_t>(s.k)];
          if (device_results) {
            accumulate_max_abs_diff(accs[t], out.y, sm.ref);
          } else {
            // A host result is complete when get() returns: read it in place, as a server
            // serializing it would (to_float_vector would go through this thread's CPU stream).
            if (static_cast<std::size_t>(out.y.numel()) != sm.expected.size() || !out.y.is_contiguous()) {
              throw Error("a result is " + out.y.str() + ", expected " + std::to_string(sm.expected.size()) + " contiguous values");
            }
            host_err[t] = std::max(host_err[t], host_max_diff(out.y, sm.expected));
          }
        };
        for (auto& s : ring) submit(s);
        auto& L = lats[t];
        L.reserve(1 << 16);
        const auto warm_until = Clock::now() + std::chrono::milliseconds(gpu ? 200 : 100);
        for (std::size_t i = 0;; i = (i + 1) % ring.size()) {
          Slot& s = ring[i];
          check(s);
          const int ph = phase.load(std::memory_order_relaxed);
          if (ph == 1) L.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s.at).count());
          if (ph == 2) break;
          if (!arrived && Clock::now() >= warm_until) {
            arrived = true;
            warm.arrive_and_wait();
          }
          submit(s);
        }
        for (auto& s : ring) {  // drain, checked but not timed
          if (s.f.valid() && !s.f.ready()) s.f.wait();
        }
        for (auto& s : ring) check(s);
      } catch (const std::exception& e) {
        errors[t] = e.what();
        phase = 2;
        if (!arrived) warm.arrive_and_drop();
      }
    });
  }
  warm.arrive_and_wait();
  const BatchQueueMetrics before = queue->metrics();
  const std::size_t dev_after_warm = memory_stats(dev).reserved_bytes;
  const double host_after_warm = rss_mb();
  phase = 1;
  const auto start = Clock::now();
  while (phase.load() == 1 && Clock::now() - start < std::chrono::duration<double>(c.duration)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const BatchQueueMetrics after = queue->metrics();
  phase = 2;
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  const double host_at_end = rss_mb();
  for (auto& th : pool) th.join();
  queue->close();
  if (take_error(r, errors)) return r;
  latency_figures(r, lats, wall);
  const Histogram bs = minus(after.batch_size, before.batch_size);
  const Histogram qh = minus(after.queue_us, before.queue_us), ch = minus(after.compute_us, before.compute_us);
  r.batch_mean = bs.mean();
  r.queue_p50 = qh.quantile(0.5) / 1e3;
  r.queue_p99 = qh.quantile(0.99) / 1e3;
  r.compute_p50 = ch.quantile(0.5) / 1e3;
  r.compute_p99 = ch.quantile(0.99) / 1e3;
  for (double e : host_err) r.max_err = std::max(r.max_err, e);
  for (auto& a : accs)
    if (a.defined()) r.max_err = std::max(r.max_err, static_cast<double>(a.to_vector<float>()[0]));
  memory_figures(r, dev, dev_after_warm, host_after_warm, host_at_end);
  // A batch rounds its GEMMs as a larger M does: a little more slack than the same-shape
  // comparison of the other modes, still far below what a swapped result gives.
  const double tol = w.dtype == DType::float32 ? 1e-4 : 3e-2;
  if (!(r.max_err <= tol)) {
    r.ok = false;
    r.error = "a result differs from its own input's expected output by " + std::to_string(r.max_err);
  }
  return r;
}

}  // namespace streampool::tools
