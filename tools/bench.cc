// `streampool bench`: the workloads and protocol of bench/WORKLOADS.md. Each configuration
// runs T threads, each with its own pool stream and input; every request's output is checked
// against a single-thread reference on the device (no host round trip); warm-up is excluded.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_server.h"
#include "commands.h"
#include "streampool/streampool.h"
#include "svg_plot.h"
#include "bench_batched.h"
#include "bench_result.h"
#include "workloads.h"

namespace streampool::tools {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string device, models = "mlp,encoder,linear4096,conv1d,bert-minilm", modes = "direct", threads, dtype = "float32";
  std::optional<double> duration;  // unset: the device's default
  int inflight = 256;
  std::optional<std::int64_t> max_batch;
  std::int64_t batch = 1;
  std::optional<int> workers;
  std::int64_t max_delay_us = 0;
  bool batched_graph = false;
  std::string length_buckets, lengths;
  std::string json_path, plot_path, compare_path;
  std::string server, protocol = "http-binary";  // --server: the load generator (bench_server.h)
  double launch_ceiling = 0;  // launches/s the card does over all threads, measured elsewhere; 0: not shown
  std::int64_t check_every = 1;  // direct and graph: which timed requests are checked (run_closed_loop)
};


// One request: the module's forward (direct mode), or the compiled module's (graph mode).
// check_every: each thread checks its requests 0, N, 2N, ... of the timed loop against its
// reference (1: every request); 0 checks only the three warm-up requests, as the anchors check
// their first outputs only.
Result run_closed_loop(bench::Workload& w, const CompiledModule* compiled, const Device& dev, DType dt, int threads,
                       double duration, std::int64_t check_every) {
  Result r;
  r.model = w.name;
  r.dtype = std::string(dtype_name(dt));
  r.mode = compiled ? "graph" : "direct";
  r.threads = threads;
  auto request = [&](const nn::Input& x) { return compiled ? (*compiled)(x).y : w.model->forward(x).y; };
  // Each thread its own input and its own expected output (computed here, one at a time), so a
  // swapped or aliased result shows as a mismatch.
  std::vector<nn::Input> inputs;
  std::vector<Tensor> refs;
  for (int t = 0; t < threads; ++t) {
    inputs.push_back(w.input(t));
    refs.push_back(w.model->forward(inputs.back()).y);
  }
  // Tests only: a wrong reference for the last thread, so that a test can see the per-request
  // check fail the run (scripts/mutation_check.sh disables the check and expects that test to fail).
  if (const char* plant = std::getenv("STREAMPOOL_BENCH_PLANT_MISMATCH"); plant && std::string(plant) == "1") {
    refs.back() = add(refs.back(), full({1}, 1.0, refs.back().dtype(), dev));
  }
  current_stream(dev).synchronize();
  reset_peak_stats(dev);

  std::vector<std::vector<double>> lats(threads);
  std::vector<Tensor> accs(threads);
  std::vector<std::string> errors(threads);
  std::atomic<bool> stop{false};
  std::barrier warm(threads + 1), go(threads + 1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      int passed = 0;  // barriers this thread has passed: a failure drops out of the rest
      try {
        Stream s = current_stream(dev);
        const nn::Input x = inputs[t];
        const Tensor& ref = refs[t];
        accs[t] = zeros({1}, DType::float32, dev);
        for (int i = 0; i < 3; ++i) accumulate_max_abs_diff(accs[t], request(x), ref);  // warm-up (graph: builds)
        s.synchronize();
        warm.arrive_and_wait();
        passed = 1;
        go.arrive_and_wait();
        passed = 2;
        auto& L = lats[t];
        L.reserve(1 << 16);
        for (std::int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
          const auto a = Clock::now();
          Tensor y = request(x);
          if (check_every > 0 && i % check_every == 0) accumulate_max_abs_diff(accs[t], y, ref);
          s.synchronize();
          L.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
        }
      } catch (const std::exception& e) {
        errors[t] = e.what();
        stop = true;
        // Without this, a thread that failed before a barrier (no stream for it, out of
        // memory) left the others and the main thread waiting there forever.
        if (passed < 1) warm.arrive_and_drop();
        if (passed < 2) go.arrive_and_drop();
      }
    });
  }
  warm.arrive_and_wait();
  const std::size_t dev_after_warm = memory_stats(dev).reserved_bytes;
  const double host_after_warm = rss_mb();
  go.arrive_and_wait();
  const auto start = Clock::now();
  while (!stop && Clock::now() - start < std::chrono::duration<double>(duration)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  // Resident memory while the threads still live, so that their stacks count on both sides.
  const double host_at_end = rss_mb();
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  if (take_error(r, errors)) return r;
  latency_figures(r, lats, wall);
  for (auto& a : accs) r.max_err = std::max(r.max_err, static_cast<double>(a.to_vector<float>()[0]));
  memory_figures(r, dev, dev_after_warm, host_after_warm, host_at_end);
  if (!(r.max_err <= tolerance(dt))) {
    r.ok = false;
    r.error = "output differs from the single-thread reference by " + std::to_string(r.max_err);
  }
  return r;
}

// The launches of one request (direct mode), counted by CUDA rather than estimated: the forward
// is captured once into a graph (on a scratch compiled module) and the graph's kernel, copy and
// fill nodes counted. {-1, -1} off CUDA, or where the forward cannot be captured (BERT's id
// check is host work), with the reason in `why`.
std::pair<std::int64_t, std::int64_t> count_launches(const bench::Workload& w, const Device& dev, std::string& why) {
  if (dev.kind != DeviceKind::cuda) return {-1, -1};
  GraphOptions go;
  go.mode = GraphMode::always;
  try {
    auto counted = compile(w.model, go);
    (void)(*counted)(w.input(0));
    current_stream(dev).synchronize();
    const GraphStats gs = counted->stats();
    return {gs.kernels_per_call, gs.copies_per_call};
  } catch (const GraphError& e) {
    why = e.what();
    return {-1, -1};
  }
}

json to_json(const Result& r, const Device& dev) {
  json j = {{"impl", "streampool"}, {"model", r.model}, {"dtype", r.dtype}, {"threads", r.threads}, {"mode", r.mode},
            {"reqs", r.reqs}, {"rps", r.rps}, {"p50_ms", r.p50}, {"p99_ms", r.p99}, {"max_err", r.max_err},
            {"device", dev.str()}, {"mem_peak_mb", r.dev_peak_mb}, {"mem_growth_mb", r.dev_growth_mb},
            {"host_peak_mb", r.host_peak_mb}, {"host_growth_mb", r.host_growth_mb}, {"ok", r.ok}};
  if (r.efficiency >= 0) j["efficiency"] = r.efficiency;
  if (r.batch > 1) j["batch"] = r.batch;
  if (!r.loop.empty()) {
    j["loop"] = r.loop;
    j["inflight"] = r.inflight;
    j["workers"] = r.workers;
    j["max_batch"] = r.max_batch;
    j["batch_mean"] = r.batch_mean;
    j["queue_p50_ms"] = r.queue_p50;
    j["queue_p99_ms"] = r.queue_p99;
    j["compute_p50_ms"] = r.compute_p50;
    j["compute_p99_ms"] = r.compute_p99;
  }
  if (r.check_every != 1) j["check_every"] = r.check_every;  // absent: every request checked
  if (r.launches >= 0) {
    j["launches_per_req"] = r.launches;  // kernels + copies / fills of one request, counted by CUDA
    j["launches_per_s"] = r.launches * r.rps;
    if (r.launch_ceiling > 0) j["launch_ceiling_frac"] = r.launches * r.rps / r.launch_ceiling;
  }
  if (r.graph_captures >= 0) {
    j["graph_captures"] = r.graph_captures;
    j["graph_eager_calls"] = r.graph_eager;  // > 0: the module could not be captured and ran eagerly
  }
  for (const auto& [k, v] : r.ratios) j["ratio_vs_" + k] = v;
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

// Other runs (anchors or earlier streampool runs), one JSON object per line.
struct Reference {
  std::string name, model, dtype, mode;
  int threads;
  double rps, p99;
};

std::vector<Reference> load_compare(const std::string& path) {
  std::vector<Reference> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  if (!in) throw InvalidArgument("--compare: cannot read '" + path + "'");
  std::string line;
  std::size_t lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    if (line.find('{') == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      continue;  // a crashed anchor may leave a partial line
    }
    Reference r;
    r.name = j.value("anchor", j.value("impl", std::string("other")));
    r.model = j.value("model", "");
    r.dtype = j.value("dtype", "");
    r.mode = j.value("mode", "");
    if (r.mode == "eager") r.mode = "direct";  // the anchors' name for the same protocol
    r.threads = j.value("threads", 0);
    r.rps = j.value("rps", 0.0);
    r.p99 = j.value("p99_ms", 0.0);
    if (!j.is_object() || r.model.empty() || r.threads < 1 || !(r.rps > 0)) continue;
    out.push_back(r);
  }
  if (out.empty()) {
    throw InvalidArgument("--compare: '" + path + "' has no valid line (" + std::to_string(lines) +
                          " lines; each needs a JSON object with model, threads >= 1 and rps > 0)");
  }
  return out;
}

}  // namespace

void add_bench_command(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("bench", "Run the benchmark workloads (bench/WORKLOADS.md) and report throughput");
  auto o = std::make_shared<Options>();
  cmd->add_option("--device", o->device, "cpu, cuda or cuda:N (default: the first usable GPU, else the CPU)");
  cmd->add_option("--models", o->models, "Comma-separated: mlp,encoder,linear4096,conv1d,bert-minilm");
  cmd->add_option("--modes", o->modes, "Comma-separated modes: direct (each request runs the module), graph (each request replays a captured graph), batched (client threads submit to a BatchQueue, closed and open loop)");
  cmd->add_option("--threads", o->threads, "Comma-separated thread counts (default 1,2,4,8,16,31; CPU 1,2,4,8)");
  cmd->add_option("--dtype", o->dtype, "float32, float16 or bfloat16");
  cmd->add_option("--duration", o->duration, "Seconds timed per configuration (default 0.6 on a GPU, 0.3 on the CPU)");
  cmd->add_option("--inflight", o->inflight, "Requests in flight in total in the batched open loop (batched mode)");
  cmd->add_option("--batch", o->batch, "Direct and graph modes: rows per request (default 1; rps counts requests, rows/s = rps x batch)");
  cmd->add_option("--max-batch", o->max_batch, "Batched mode: the queue's max_batch_size (default 256 on a GPU, 32 on the CPU)");
  cmd->add_option("--workers", o->workers, "Batched mode: queue workers (default 2 on a GPU, 1 on the CPU)");
  cmd->add_option("--max-delay-us", o->max_delay_us, "Batched mode: the queue's max_delay in microseconds (default 0)");
  cmd->add_flag("--batched-graph", o->batched_graph, "Batched mode: workers replay captured graphs per batch-size bucket");
  cmd->add_option("--length-buckets", o->length_buckets, "Batched mode: comma-separated length buckets (encoder, bert-minilm)");
  cmd->add_option("--lengths", o->lengths, "Batched mode: MIN:MAX request lengths, mixed (default 16:128 for bert-minilm, else each workload's own)");
  cmd->add_option("--check-every", o->check_every, "Direct and graph modes: check every Nth timed request of each thread against its reference (default 1: every request; 0: only the warm-up requests, as the anchors check their first outputs only)")
      ->check(CLI::Range(std::int64_t(0), std::int64_t(1) << 40));
  cmd->add_option("--launch-ceiling", o->launch_ceiling, "CUDA: the card's kernel launches/s over all threads (../shared/anchors/cuda_limits.cu measures it); each configuration then reports launches/s as a fraction of it")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--json", o->json_path, "Write one JSON object per configuration to this file");
  cmd->add_option("--plot", o->plot_path, "Write an SVG plot of throughput and p99 against threads");
  cmd->add_option("--compare", o->compare_path, "JSON lines of another run or an anchor: adds the ratio against it");
  cmd->add_option("--server", o->server, "http://IPV4:PORT: load a running `streampool serve` (or any Open Inference Protocol server) instead; --models names its models, --threads the concurrencies (default 256), --duration the window (default 5)");
  cmd->add_option("--protocol", o->protocol, "With --server: http-binary (default: the binary tensor data extension) or http-json");
  cmd->callback([o, exit_code] {
    if (!o->server.empty()) {
      ServerBenchOptions so;
      so.url = o->server;
      so.models = split_list(o->models);
      so.protocol = o->protocol;
      so.json_path = o->json_path;
      if (o->duration) {
        if (!(std::isfinite(*o->duration) && *o->duration > 0 && *o->duration <= 86400)) {
          throw InvalidArgument("--duration: not a number of seconds above 0 and at most 86400");
        }
        so.duration = *o->duration;
      }
      for (const auto& t : split_list(o->threads.empty() ? "256" : o->threads)) {
        const int n = std::atoi(t.c_str());
        if (n < 1 || n > 4096) throw InvalidArgument("--threads: '" + t + "' is not a concurrency from 1 to 4096");
        so.concurrency.push_back(n);
      }
      if (!o->lengths.empty()) {
        const auto c = o->lengths.find(':');
        so.min_len = std::atoi(o->lengths.substr(0, c).c_str());
        so.max_len = c == std::string::npos ? 0 : std::atoi(o->lengths.substr(c + 1).c_str());
        if (so.min_len < 1 || so.max_len < so.min_len) throw InvalidArgument("--lengths: '" + o->lengths + "' is not MIN:MAX");
      }
      *exit_code = run_server_bench(so);
      return;
    }
    const Device dev = pick_device(o->device, "bench");
    const DType dt = parse_float_dtype("--dtype", o->dtype);
    const bool cpu = dev.kind == DeviceKind::cpu;
    if (o->duration && !(std::isfinite(*o->duration) && *o->duration > 0 && *o->duration <= 86400)) {
      std::ostringstream v;
      v << *o->duration;
      throw InvalidArgument("--duration: " + v.str() + " is not a number of seconds above 0 and at most 86400");
    }
    const double duration = o->duration ? *o->duration : (cpu ? 0.3 : 0.6);
    if (o->inflight < 1 || o->inflight > 1 << 20) {
      throw InvalidArgument("--inflight: " + std::to_string(o->inflight) + " is not a request count from 1 to 1048576");
    }
    std::vector<int> thread_counts;
    for (const auto& t : split_list(o->threads.empty() ? (cpu ? "1,2,4,8" : "1,2,4,8,16,31") : o->threads)) {
      int n = 0;
      try {
        n = std::stoi(t);
      } catch (const std::exception&) {
      }
      if (n < 1 || n > 1024) throw InvalidArgument("--threads: '" + t + "' is not a thread count from 1 to 1024");
      thread_counts.push_back(n);
    }
    if (thread_counts.empty()) throw InvalidArgument("--threads: no thread count given");
    std::vector<std::string> models = split_list(o->models), modes = split_list(o->modes);
    if (models.empty()) throw InvalidArgument("--models: no workload given (choose from mlp,encoder,linear4096,conv1d,bert-minilm)");
    if (modes.empty()) throw InvalidArgument("--modes: no mode given (direct)");
    check_threads_fit_pool(*std::max_element(thread_counts.begin(), thread_counts.end()));
    for (const auto& m : modes) {
      if (m != "direct" && m != "graph" && m != "batched") throw InvalidArgument("--modes: '" + m + "' is not direct, graph or batched");
    }
    for (const auto& m : models) {
      if (std::find(bench::workload_names().begin(), bench::workload_names().end(), m) == bench::workload_names().end()) {
        throw InvalidArgument("--models: unknown workload '" + m + "'");
      }
    }
    BatchedConfig bc;
    bc.duration = duration;
    bc.max_batch = o->max_batch ? *o->max_batch : (cpu ? 32 : 256);
    bc.workers = o->workers ? *o->workers : (cpu ? 1 : 2);
    bc.max_delay_us = o->max_delay_us;
    bc.graph = o->batched_graph;
    bc.inflight = o->inflight;
    if (bc.max_batch < 1 || bc.max_batch > (1 << 20)) throw InvalidArgument("--max-batch: " + std::to_string(bc.max_batch) + " is not from 1 to 1048576");
    if (bc.workers < 1 || bc.workers > 64) throw InvalidArgument("--workers: " + std::to_string(bc.workers) + " is not from 1 to 64");
    if (bc.max_delay_us < 0 || bc.max_delay_us > 10000000) throw InvalidArgument("--max-delay-us: " + std::to_string(bc.max_delay_us) + " is not from 0 to 10000000");
    for (const auto& b : split_list(o->length_buckets)) {
      std::int64_t v = 0;
      try {
        v = std::stoll(b);
      } catch (const std::exception&) {
      }
      if (v < 1 || (!bc.length_buckets.empty() && v <= bc.length_buckets.back())) {
        throw InvalidArgument("--length-buckets: '" + o->length_buckets + "' is not a list of ascending positive lengths");
      }
      bc.length_buckets.push_back(v);
    }
    std::int64_t min_len = 0, max_len = 0;
    if (!o->lengths.empty()) {
      const auto colon = o->lengths.find(':');
      try {
        if (colon == std::string::npos) throw InvalidArgument("");
        min_len = std::stoll(o->lengths.substr(0, colon));
        max_len = std::stoll(o->lengths.substr(colon + 1));
      } catch (const std::exception&) {
        min_len = max_len = 0;
      }
      if (min_len < 1 || max_len < min_len) throw InvalidArgument("--lengths: '" + o->lengths + "' is not MIN:MAX with 1 <= MIN <= MAX");
    }
    if (o->batch < 1 || o->batch > 65536) throw InvalidArgument("--batch: " + std::to_string(o->batch) + " is not from 1 to 65536");
    const auto refs = load_compare(o->compare_path);
    std::ofstream json_out;
    if (!o->json_path.empty()) {
      json_out.open(o->json_path);
      if (!json_out) throw InvalidArgument("--json: cannot write '" + o->json_path + "'");
    }
    std::fprintf(stderr, "bench: %s, %s, %.2f s per configuration\n", dev.str().c_str(), o->dtype.c_str(), duration);
    std::vector<Result> results;
    const std::size_t total = models.size() * modes.size() * thread_counts.size();
    for (const auto& model : models) {
      bench::Workload w = bench::make_workload(model, dev, dt);
      const bench::Workload w_one = w;  // batched mode: batch-1 requests
      if (w.shape.empty() || w.shape[0] < 1) throw Error("bench: workload " + model + " has no batch dimension");
      w.shape[0] *= o->batch;
      for (const auto& mode : modes) {
        // One compiled module per workload: its instances (per stream) persist across thread counts.
        std::shared_ptr<CompiledModule> compiled = mode == "graph" ? compile(w.model) : nullptr;
        double single = 0;
        if (mode == "batched") {
          BatchedConfig cfg = bc;
          const bool seq = w_one.ids || w_one.shape.size() >= 3;
          if (max_len > 0 && seq) {
            cfg.min_len = min_len;
            cfg.max_len = std::min<std::int64_t>(max_len, w_one.shape[1]);
          } else if (w_one.ids) {
            cfg.min_len = std::min<std::int64_t>(16, w_one.shape[1]);
            cfg.max_len = w_one.shape[1];
          }
          for (int t : thread_counts) {
            for (bool open : {false, true}) {
              std::fprintf(stderr, "\r[%zu/%zu] %-12s %-8s batched %-6s clients %-3d ...        ", results.size() + 1,
                           total * 2, model.c_str(), o->dtype.c_str(), open ? "open" : "closed", t);
              std::fflush(stderr);
              cfg.clients = t;
              cfg.open = open;
              Result r = run_batched(w_one, cfg);
              for (const auto& ref : refs) {
                if (ref.model == r.model && ref.dtype == r.dtype && ref.mode == r.mode && ref.threads == t && ref.rps > 0) {
                  r.ratios[ref.name] = r.rps / ref.rps;
                }
              }
              if (json_out) json_out << to_json(r, dev).dump() << "\n" << std::flush;
              results.push_back(r);
            }
          }
          continue;
        }
        std::string uncounted;
        const auto [kernels, copies] = count_launches(w, dev, uncounted);
        if (dev.kind == DeviceKind::cuda && kernels >= 0) {
          std::fprintf(stderr, "\rbench: %s %s: one request launches %lld kernels and %lld copies or fills\n", model.c_str(),
                       o->dtype.c_str(), static_cast<long long>(kernels), static_cast<long long>(copies));
        } else if (dev.kind == DeviceKind::cuda) {
          std::fprintf(stderr, "\rbench: %s %s: launches not counted: %s\n", model.c_str(), o->dtype.c_str(),
                       uncounted.c_str());
        }
        for (int t : thread_counts) {
          std::fprintf(stderr, "\r[%zu/%zu] %-12s %-8s %-6s threads %-3d ...        ", results.size() + 1, total,
                       model.c_str(), o->dtype.c_str(), mode.c_str(), t);
          std::fflush(stderr);
          Result r = run_closed_loop(w, compiled.get(), dev, dt, t, duration, o->check_every);
          r.batch = o->batch;
          r.check_every = o->check_every;
          // A graph replay is one launch (its copies in and out ride in it); direct mode launches each node.
          if (kernels >= 0) r.launches = compiled ? 1 : kernels + copies;
          r.launch_ceiling = o->launch_ceiling;
          if (compiled) {
            const GraphStats gs = compiled->stats();
            r.graph_captures = gs.captures;
            r.graph_eager = gs.eager;
          }
          if (t == 1 && r.ok) single = r.rps;
          if (single > 0) r.efficiency = r.rps / (t * single);
          for (const auto& ref : refs) {
            if (ref.model == r.model && ref.dtype == r.dtype && ref.mode == r.mode && ref.threads == t && ref.rps > 0) {
              r.ratios[ref.name] = r.rps / ref.rps;
            }
          }
          if (json_out) json_out << to_json(r, dev).dump() << "\n" << std::flush;
          results.push_back(r);
        }
      }
    }
    std::fprintf(stderr, "\r%80s\r", "");
    // The table.
    std::printf("%-12s %-8s %-6s %4s %11s %9s %9s %6s %9s %9s %9s %9s %6s %9s", "model", "dtype", "mode", "thr", "req/s",
                "p50 ms", "p99 ms", "eff", "max_err", "devMB", "hostMB", "growMB", "launch", "launch/s");
    std::vector<std::string> ref_names;
    for (const auto& ref : refs)
      if (std::find(ref_names.begin(), ref_names.end(), ref.name) == ref_names.end()) ref_names.push_back(ref.name);
    for (const auto& n : ref_names) std::printf(" %14s", ("x " + n).c_str());
    std::printf("\n");
    bool failed = false;
    for (const auto& r : results) {
      failed |= !r.ok;
      // Efficiency needs the one-thread figure of the same run: blank without it.
      const std::string eff = r.efficiency >= 0 ? std::to_string(static_cast<int>(std::lround(r.efficiency * 100))) + "%" : "-";
      const std::string mode = r.loop.empty() ? r.mode : (r.loop == "open" ? "b-open" : "b-clsd");
      std::printf("%-12s %-8s %-6s %4d %11.0f %9.4f %9.4f %6s %9.2g %9.1f %9.1f %9.2f", r.model.c_str(),
                  r.dtype.c_str(), mode.c_str(), r.threads, r.rps, r.p50, r.p99, eff.c_str(), r.max_err,
                  r.dev_peak_mb, r.host_peak_mb, r.dev_growth_mb);
      if (r.launches >= 0) std::printf(" %6lld %9.0f", static_cast<long long>(r.launches), r.launches * r.rps);
      else std::printf(" %6s %9s", "-", "-");
      for (const auto& n : ref_names) {
        auto it = r.ratios.find(n);
        if (it == r.ratios.end()) std::printf(" %14s", "-");
        else std::printf(" %13.2fx", it->second);
      }
      if (!r.loop.empty()) {
        std::printf("  inflight %d batch %.1f queue p99 %.3f ms compute p99 %.3f ms", r.inflight, r.batch_mean, r.queue_p99,
                    r.compute_p99);
      }
      if (!r.ok) std::printf("  FAILED: %s", r.error.c_str());
      std::printf("\n");
    }
    if (!o->plot_path.empty()) {
      std::vector<bench::Series> series;
      std::map<std::string, std::size_t> index;
      auto series_for = [&](const std::string& label, bool dashed) -> bench::Series& {
        auto it = index.find(label);
        if (it != index.end()) return series[it->second];
        index[label] = series.size();
        series.push_back({label, dashed, {}, {}});
        return series.back();
      };
      for (const auto& r : results) {
        auto& s = series_for("streampool " + r.model + " " + r.dtype + " " + r.mode, false);
        s.rps.emplace_back(r.threads, r.rps);
        s.p99.emplace_back(r.threads, r.p99);
      }
      for (const auto& ref : refs) {
        bool shown = false;
        for (const auto& r : results) shown |= r.model == ref.model && r.dtype == ref.dtype && r.mode == ref.mode;
        if (!shown) continue;
        auto& s = series_for(ref.name + " " + ref.model + " " + ref.dtype + " " + ref.mode, true);
        s.rps.emplace_back(ref.threads, ref.rps);
        s.p99.emplace_back(ref.threads, ref.p99);
      }
      for (auto& s : series) {
        std::sort(s.rps.begin(), s.rps.end());
        std::sort(s.p99.begin(), s.p99.end());
      }
      DeviceProperties p = device_properties(dev);
      bench::write_svg(o->plot_path, "streampool bench on " + dev.str() + " (" + p.name + ")", series);
      std::fprintf(stderr, "bench: plot written to %s\n", o->plot_path.c_str());
    }
    if (failed) std::fprintf(stderr, "bench: FAILED: a configuration failed or its outputs did not match\n");
    *exit_code = failed ? 1 : 0;
  });
}

}  // namespace streampool::tools
