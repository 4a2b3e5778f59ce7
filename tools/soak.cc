// `streampool soak`: mixed workloads and modes from many threads for minutes. Every request is
// checked against its own input's expected output; threads end and are replaced as they go
// (each life a new thread, so stream leases return and are taken again). Reports failures,
// latency per mode, and the growth of resident memory, of the allocator's reserved device memory
// and of the device memory in use (the driver's view) per million requests after warm-up.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "bench_result.h"
#include "commands.h"
#include "streampool/streampool.h"
#include "workloads.h"

namespace streampool::tools {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct SoakOptions {
  std::string device, models, modes = "direct,graph,batched", dtype = "float32", json_path;
  double minutes = 10;
  int threads = 31;
  int lifetime = 2000;  // requests per thread life
  double sample_seconds = 5;
  double warmup_fraction = 0.2;
  double growth_limit_mb = 1.0;
  bool no_growth_check = false;
};

// Latencies in 5% wide buckets from 1 us (one thread's, merged at the end): a soak makes too many
// requests to keep each latency, and a growing vector would be the memory growth it measures.
struct LatencyHist {
  static constexpr int kBuckets = 420;  // 1.05^420 us ~ 800 s
  std::vector<std::uint64_t> counts = std::vector<std::uint64_t>(kBuckets, 0);
  std::uint64_t total = 0;
  void add(double us) {
    const int b = us <= 1 ? 0 : std::min(kBuckets - 1, static_cast<int>(std::log(us) / std::log(1.05)) + 1);
    ++counts[static_cast<std::size_t>(b)];
    ++total;
  }
  void merge(const LatencyHist& o) {
    for (int i = 0; i < kBuckets; ++i) counts[static_cast<std::size_t>(i)] += o.counts[static_cast<std::size_t>(i)];
    total += o.total;
  }
  // Upper bound of the bucket holding quantile q, in ms.
  double quantile_ms(double q) const {
    if (total == 0) return 0;
    const auto want = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[static_cast<std::size_t>(i)];
      if (seen >= std::max<std::uint64_t>(want, 1)) return std::pow(1.05, i) / 1e3;
    }
    return std::pow(1.05, kBuckets) / 1e3;
  }
};

enum class Mode { direct, graph, batched };
const char* mode_name(Mode m) { return m == Mode::direct ? "direct" : m == Mode::graph ? "graph" : "batched"; }

// One workload with its K inputs, their expected outputs (computed once, directly, before the
// soak), its compiled module and its queue.
struct Model {
  bench::Workload w;
  std::vector<nn::Input> inputs;
  std::vector<std::vector<float>> expected;
  std::shared_ptr<CompiledModule> compiled;
  std::unique_ptr<BatchQueue> queue;
};

struct Sample {
  double seconds;
  std::uint64_t requests;
  double host_mb, reserved_mb, used_mb;  // used_mb < 0 where the device has no such figure (CPU)
  double peak_mb;                        // the allocator's allocated peak so far
  std::uint64_t segments;                // raw device allocations so far (cache misses)
  std::uint64_t pending;                 // freed blocks waiting for other streams' events now
  std::uint64_t moved;                   // free segments taken over by another stream so far
  std::uint64_t recycled;                // whole free segments given back to cover larger misses so far
};

// Least-squares slope of y against requests, in MB per million requests.
double slope_per_million(const std::vector<Sample>& s, double Sample::*field) {
  if (s.size() < 2) return 0;
  double mx = 0, my = 0;
  for (const auto& p : s) {
    mx += static_cast<double>(p.requests) / 1e6;
    my += p.*field;
  }
  mx /= static_cast<double>(s.size());
  my /= static_cast<double>(s.size());
  double sxy = 0, sxx = 0;
  for (const auto& p : s) {
    const double dx = static_cast<double>(p.requests) / 1e6 - mx;
    sxy += dx * (p.*field - my);
    sxx += dx * dx;
  }
  return sxx > 0 ? sxy / sxx : 0;
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

int run_soak(const SoakOptions& o) {
  const Device dev = pick_device(o.device, "soak");
  const DType dt = parse_float_dtype("--dtype", o.dtype);
  const bool gpu = dev.kind != DeviceKind::cpu;
  if (!(std::isfinite(o.minutes) && o.minutes > 0 && o.minutes <= 10080)) {
    throw InvalidArgument("--minutes: " + num(o.minutes) + " is not above 0 and at most 10080 (a week)");
  }
  if (o.threads < 1 || o.threads > 1024) throw InvalidArgument("--threads: " + std::to_string(o.threads) + " is not from 1 to 1024");
  if (o.lifetime < 1) throw InvalidArgument("--lifetime: " + std::to_string(o.lifetime) + " is not a request count of at least 1");
  if (!(o.sample_seconds >= 0.1 && o.sample_seconds <= 3600)) {
    throw InvalidArgument("--sample-seconds: " + num(o.sample_seconds) + " is not from 0.1 to 3600");
  }
  if (!(o.warmup_fraction >= 0 && o.warmup_fraction < 1)) {
    throw InvalidArgument("--warmup-fraction: " + num(o.warmup_fraction) + " is not from 0 up to (not including) 1");
  }
  if (!(o.growth_limit_mb >= 0)) throw InvalidArgument("--growth-limit-mb: " + num(o.growth_limit_mb) + " is not 0 or more");
  check_threads_fit_pool(o.threads);
  std::vector<std::string> model_names = split_list(o.models.empty() ? (gpu ? "mlp,encoder,conv1d,bert-minilm" : "mlp,conv1d") : o.models);
  if (model_names.empty()) throw InvalidArgument("--models: no workload given");
  for (const auto& m : model_names) {
    if (std::find(bench::workload_names().begin(), bench::workload_names().end(), m) == bench::workload_names().end()) {
      throw InvalidArgument("--models: unknown workload '" + m + "'");
    }
  }
  std::vector<Mode> modes;
  for (const auto& m : split_list(o.modes)) {
    if (m == "direct") modes.push_back(Mode::direct);
    else if (m == "graph") modes.push_back(Mode::graph);
    else if (m == "batched") modes.push_back(Mode::batched);
    else throw InvalidArgument("--modes: '" + m + "' is not direct, graph or batched");
  }
  if (modes.empty()) throw InvalidArgument("--modes: no mode given");
  std::ofstream json_out;
  if (!o.json_path.empty()) {
    json_out.open(o.json_path);
    if (!json_out) throw InvalidArgument("--json: cannot write '" + o.json_path + "'");
  }

  // Set-up: K inputs per workload, each with its expected output from one direct call.
  constexpr int K = 8;
  std::vector<Model> models;
  for (const auto& name : model_names) {
    Model m;
    m.w = bench::make_workload(name, dev, dt);
    for (int k = 0; k < K; ++k) {
      m.inputs.push_back(m.w.input(k));
      m.expected.push_back(m.w.model->forward(m.inputs.back()).y.to_float_vector());
    }
    if (std::find(modes.begin(), modes.end(), Mode::graph) != modes.end()) m.compiled = compile(m.w.model);
    if (std::find(modes.begin(), modes.end(), Mode::batched) != modes.end()) {
      BatchOptions bo;
      bo.max_batch_size = gpu ? 64 : 16;
      bo.num_workers = gpu ? 2 : 1;
      bo.name = "soak-" + name;
      m.queue = std::make_unique<BatchQueue>(m.w.model, bo);
    }
    models.push_back(std::move(m));
  }
  // Tests only (as in bench): one wrong expected output, so that a test sees the check fail the run.
  if (const char* plant = std::getenv("STREAMPOOL_BENCH_PLANT_MISMATCH"); plant && std::string(plant) == "1") {
    models.front().expected.back().front() += 1.0f;
  }
  current_stream(dev).synchronize();

  // Shared state of the run, each piece with its guard: the counters are atomics; `failures`
  // and the per-thread histograms merged at the end are under `mu`.
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> requests{0};
  };
  std::vector<Slot> slots(static_cast<std::size_t>(o.threads));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> failed{0}, lives{0};
  std::mutex mu;
  std::vector<std::string> failures;  // the first few, for the report
  std::vector<LatencyHist> hist(modes.size());
  std::vector<std::uint64_t> mode_failed(modes.size(), 0);
  const double batched_tol = dt == DType::float32 ? 1e-4 : 3e-2;

  auto fail = [&](std::string what) {
    ++failed;
    std::lock_guard<std::mutex> g(mu);
    if (failures.size() < 10) failures.push_back(std::move(what));
  };
  // One thread's life: `lifetime` requests (or until stop), each its own (model, mode, input).
  auto life = [&](int t, std::uint64_t life_no) {
    std::vector<LatencyHist> mine(modes.size());
    std::vector<std::uint64_t> mine_failed(modes.size(), 0);
    std::uint64_t i = life_no * 7919u + static_cast<std::uint64_t>(t) * 104729u;
    for (int n = 0; n < o.lifetime && !stop.load(std::memory_order_relaxed); ++n, ++i) {
      const std::size_t mi = (i / 3) % models.size(), di = i % modes.size(), k = (i / 5) % K;
      Model& m = models[mi];
      const Mode mode = modes[di];
      const auto a = Clock::now();
      try {
        nn::Output out;
        if (mode == Mode::direct) out = m.w.model->forward(m.inputs[k]);
        else if (mode == Mode::graph) out = (*m.compiled)(m.inputs[k]);
        else out = m.queue->submit(m.inputs[k]).get();
        const std::vector<float> got = out.y.to_float_vector();
        const std::vector<float>& want = m.expected[k];
        double err = got.size() == want.size() ? 0.0 : INFINITY;
        for (std::size_t j = 0; j < got.size() && j < want.size(); ++j) {
          const double d = std::fabs(static_cast<double>(got[j]) - want[j]);
          if (!(d <= err)) err = std::isnan(d) ? INFINITY : d;
        }
        const double tol = mode == Mode::batched ? batched_tol : tolerance(dt);
        if (!(err <= tol)) {
          ++mine_failed[di];
          fail(m.w.name + " " + mode_name(mode) + " input " + std::to_string(k) + ": differs from its expected output by " +
               std::to_string(err));
        }
      } catch (const std::exception& e) {
        ++mine_failed[di];
        fail(m.w.name + " " + mode_name(mode) + ": " + e.what());
      }
      mine[di].add(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
      slots[static_cast<std::size_t>(t)].requests.fetch_add(1, std::memory_order_relaxed);
    }
    std::lock_guard<std::mutex> g(mu);
    for (std::size_t j = 0; j < modes.size(); ++j) {
      hist[j].merge(mine[j]);
      mode_failed[j] += mine_failed[j];
    }
  };
  // Slot threads never touch a device: each runs its lives one after another, each life a new
  // thread with its own stream lease.
  std::vector<std::thread> supervisors;
  for (int t = 0; t < o.threads; ++t) {
    supervisors.emplace_back([&, t] {
      for (std::uint64_t n = 0; !stop.load(); ++n) {
        try {
          std::thread(life, t, n).join();
          ++lives;
        } catch (const std::exception& e) {  // no thread could be started: a failure, not an abort
          fail(std::string("starting a client thread: ") + e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    });
  }

  auto total_requests = [&] {
    std::uint64_t s = 0;
    for (const auto& sl : slots) s += sl.requests.load(std::memory_order_relaxed);
    return s;
  };
  auto sample = [&](double seconds) {
    const MemoryStats ms = memory_stats(dev);
    Sample s{seconds, total_requests(), rss_mb(), static_cast<double>(ms.reserved_bytes) / 1e6, -1,
             static_cast<double>(ms.allocated_peak) / 1e6, ms.device_allocations, ms.pending_frees,
             ms.cross_stream_segments, ms.recycled_segments};
    if (gpu) {
      const DeviceProperties p = device_properties(dev);
      s.used_mb = static_cast<double>(p.total_memory - p.free_memory) / 1e6;
    }
    return s;
  };
  const double duration = o.minutes * 60;
  std::vector<Sample> samples;
  const auto start = Clock::now();
  samples.push_back(sample(0));
  std::fprintf(stderr, "soak: %s, %s, %d threads, %s, %zu workloads, %.1f min\n", dev.str().c_str(), o.dtype.c_str(), o.threads,
               o.modes.c_str(), models.size(), o.minutes);
  for (;;) {
    const double now = std::chrono::duration<double>(Clock::now() - start).count();
    if (now >= duration) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(o.sample_seconds, duration - now)));
    const Sample s = sample(std::chrono::duration<double>(Clock::now() - start).count());
    samples.push_back(s);
    std::fprintf(stderr, "soak: %6.0f s  %10llu requests  %llu failed  host %.1f MB  device reserved %.1f MB  peak %.1f MB  segments %llu  moved %llu  recycled %llu  pending frees %llu%s\n",
                 s.seconds, static_cast<unsigned long long>(s.requests), static_cast<unsigned long long>(failed.load()), s.host_mb,
                 s.reserved_mb, s.peak_mb, static_cast<unsigned long long>(s.segments), static_cast<unsigned long long>(s.moved),
                 static_cast<unsigned long long>(s.recycled), static_cast<unsigned long long>(s.pending),
                 s.used_mb >= 0 ? ("  in use " + std::to_string(static_cast<long>(s.used_mb)) + " MB").c_str() : "");
  }
  stop = true;
  for (auto& th : supervisors) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& m : models)
    if (m.queue) m.queue->close();

  // After warm-up: the samples from warmup_fraction of the run on.
  std::vector<Sample> steady;
  for (const auto& s : samples)
    if (s.seconds >= o.warmup_fraction * duration) steady.push_back(s);
  const std::uint64_t reqs = total_requests();
  const double host_slope = slope_per_million(steady, &Sample::host_mb);
  const double reserved_slope = slope_per_million(steady, &Sample::reserved_mb);
  const double used_slope = gpu ? slope_per_million(steady, &Sample::used_mb) : 0;
  const double steady_mreqs = steady.size() >= 2 ? static_cast<double>(steady.back().requests - steady.front().requests) / 1e6 : 0;

  std::printf("soak: %s, %s, %d threads, %.1f s, %llu requests (%.0f/s), %llu thread lives, %llu failed\n", dev.str().c_str(),
              o.dtype.c_str(), o.threads, wall, static_cast<unsigned long long>(reqs), static_cast<double>(reqs) / wall,
              static_cast<unsigned long long>(lives.load()), static_cast<unsigned long long>(failed.load()));
  std::printf("%-8s %12s %8s %9s %9s %9s\n", "mode", "requests", "failed", "p50 ms", "p99 ms", "p999 ms");
  json j = {{"device", dev.str()}, {"dtype", o.dtype}, {"threads", o.threads}, {"seconds", wall}, {"requests", reqs},
            {"failed", failed.load()}, {"lives", lives.load()}};
  for (std::size_t i = 0; i < modes.size(); ++i) {
    std::printf("%-8s %12llu %8llu %9.3f %9.3f %9.3f\n", mode_name(modes[i]), static_cast<unsigned long long>(hist[i].total),
                static_cast<unsigned long long>(mode_failed[i]), hist[i].quantile_ms(0.5), hist[i].quantile_ms(0.99),
                hist[i].quantile_ms(0.999));
    j["modes"][mode_name(modes[i])] = {{"requests", hist[i].total}, {"failed", mode_failed[i]}, {"p50_ms", hist[i].quantile_ms(0.5)},
                                       {"p99_ms", hist[i].quantile_ms(0.99)}};
  }
  std::printf("memory after warm-up (%zu samples, %.2f M requests), MB per million requests: host %.3f, device reserved %.3f",
              steady.size(), steady_mreqs, host_slope, reserved_slope);
  if (gpu) std::printf(", device in use %.3f", used_slope);
  std::printf("\n");
  // The second half alone tells a cache that is still settling from one that keeps growing.
  std::vector<Sample> late;
  for (const auto& s : samples)
    if (s.seconds >= 0.5 * duration) late.push_back(s);
  std::printf("memory in the second half (%zu samples), MB per million requests: host %.3f, device reserved %.3f", late.size(),
              slope_per_million(late, &Sample::host_mb), slope_per_million(late, &Sample::reserved_mb));
  if (gpu) std::printf(", device in use %.3f", slope_per_million(late, &Sample::used_mb));
  std::printf("\n");
  if (!steady.empty()) {
    std::printf("memory at warm-up -> end, MB: host %.1f -> %.1f, device reserved %.1f -> %.1f", steady.front().host_mb,
                steady.back().host_mb, steady.front().reserved_mb, steady.back().reserved_mb);
    if (gpu) std::printf(", device in use %.1f -> %.1f", steady.front().used_mb, steady.back().used_mb);
    // Growth of reserved memory with a flat allocated peak is fragmentation of the cache; with
    // a rising peak, more memory in use at once than before.
    std::printf("\nallocator at warm-up -> end: allocated peak %.1f -> %.1f MB, raw device allocations %llu -> %llu, segments moved between streams %llu -> %llu, recycled %llu -> %llu\n",
                steady.front().peak_mb, steady.back().peak_mb, static_cast<unsigned long long>(steady.front().segments),
                static_cast<unsigned long long>(steady.back().segments), static_cast<unsigned long long>(steady.front().moved),
                static_cast<unsigned long long>(steady.back().moved), static_cast<unsigned long long>(steady.front().recycled),
                static_cast<unsigned long long>(steady.back().recycled));
  }
  j["growth_mb_per_million"] = {{"host", host_slope}, {"device_reserved", reserved_slope}};
  if (gpu) j["growth_mb_per_million"]["device_in_use"] = used_slope;
  for (const auto& f : failures) std::printf("  failure: %s\n", f.c_str());
  bool ok = failed.load() == 0;
  if (!o.no_growth_check) {
    for (auto [what, v] : {std::pair{"host", host_slope}, {"device reserved", reserved_slope}, {"device in use", used_slope}}) {
      if (v > o.growth_limit_mb) {
        std::printf("soak: FAILED: %s memory grew %.3f MB per million requests (limit %.3f)\n", what, v, o.growth_limit_mb);
        ok = false;
      }
    }
    if (steady.size() < 3) {
      std::printf("soak: FAILED: %zu samples after warm-up, too few to judge growth (longer --minutes or shorter --sample-seconds)\n",
                  steady.size());
      ok = false;
    }
  }
  if (failed.load() > 0) std::printf("soak: FAILED: %llu requests failed\n", static_cast<unsigned long long>(failed.load()));
  j["ok"] = ok;
  if (json_out) json_out << j.dump() << "\n";
  return ok ? 0 : 1;
}

}  // namespace

void add_soak_command(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<SoakOptions>();
  CLI::App* cmd = app.add_subcommand("soak", "Mixed workloads and modes from many threads for minutes: failures, latency, memory growth");
  cmd->add_option("--device", o->device, "cpu, cuda or cuda:N (default: cuda:0 where usable, else the CPU)");
  cmd->add_option("--minutes", o->minutes, "How long to run (default 10)");
  cmd->add_option("--threads", o->threads, "Client threads (default 31)");
  cmd->add_option("--models", o->models, "Comma-separated workloads (default mlp,encoder,conv1d,bert-minilm on a GPU, mlp,conv1d on the CPU)");
  cmd->add_option("--modes", o->modes, "Comma-separated modes, mixed request by request (default direct,graph,batched)");
  cmd->add_option("--dtype", o->dtype, "float32, float16 or bfloat16 (default float32)");
  cmd->add_option("--lifetime", o->lifetime, "Requests per thread life before it ends and a new thread takes its place (default 2000)");
  cmd->add_option("--sample-seconds", o->sample_seconds, "Seconds between memory samples (default 5)");
  cmd->add_option("--warmup-fraction", o->warmup_fraction, "Share of the run left out of the growth figures (default 0.2)");
  cmd->add_option("--growth-limit-mb", o->growth_limit_mb, "Most memory growth per million requests after warm-up, each of host, device reserved and device in use (default 1)");
  cmd->add_flag("--no-growth-check", o->no_growth_check, "Report memory growth without failing on it (short runs)");
  cmd->add_option("--json", o->json_path, "Write the figures as one JSON object to this file");
  cmd->callback([o, exit_code] { *exit_code = run_soak(*o); });
}

}  // namespace streampool::tools
