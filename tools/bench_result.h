#pragma once
// What one bench configuration reports, shared by the bench's modes.

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>
#include <algorithm>

#include "streampool/allocator.h"
#include "streampool/dtype.h"

namespace streampool::tools {

inline double rss_mb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1e6;
}

inline double peak_rss_mb() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1e3;
}

struct Result {
  std::string model, dtype, mode;
  int threads = 0;
  std::int64_t batch = 1;  // rows per request (direct, graph)
  std::size_t reqs = 0;
  double rps = 0, p50 = 0, p99 = 0, max_err = 0, efficiency = -1;
  std::int64_t graph_captures = -1, graph_eager = -1;  // graph mode: the compiled module's counters so far
  std::int64_t check_every = 1;  // direct, graph: every Nth timed request checked; 0 only the warm-up ones
  std::int64_t launches = -1;  // CUDA: launches per request, counted (bench.cc count_launches); -1 not known
  double launch_ceiling = 0;   // --launch-ceiling, launches/s; 0 unknown
  double dev_peak_mb = 0, host_peak_mb = 0, dev_growth_mb = 0, host_growth_mb = 0;
  // batched mode
  std::string loop;            // closed (one request in flight per client) or open (inflight in total)
  int inflight = 0, workers = 0;
  std::int64_t max_batch = 0;
  double batch_mean = 0, queue_p50 = 0, queue_p99 = 0, compute_p50 = 0, compute_p99 = 0;  // ms, from the queue's histograms
  bool ok = true;
  std::string error;
  std::map<std::string, double> ratios;  // vs other runs, by their impl / anchor name
};

// Tolerance for "same as the single-thread reference": kernels are deterministic, so outputs
// should be identical; a little slack absorbs nothing but genuine corruption.
inline double tolerance(DType dt) { return dt == DType::float32 ? 1e-5 : 1e-2; }

// The first thread's error, if any, into `r` (ok = false); true if there was one.
inline bool take_error(Result& r, const std::vector<std::string>& errors) {
  for (const auto& e : errors) {
    if (!e.empty()) {
      r.ok = false;
      r.error = e;
      return true;
    }
  }
  return false;
}

// Requests, requests/s over `wall` seconds, p50 and p99 from every thread's latencies (ms).
inline void latency_figures(Result& r, const std::vector<std::vector<double>>& lats, double wall) {
  std::vector<double> all;
  for (const auto& L : lats) all.insert(all.end(), L.begin(), L.end());
  std::sort(all.begin(), all.end());
  r.reqs = all.size();
  r.rps = static_cast<double>(r.reqs) / wall;
  if (!all.empty()) {
    r.p50 = all[all.size() / 2];
    r.p99 = all[std::min(all.size() - 1, static_cast<std::size_t>(static_cast<double>(all.size()) * 0.99))];
  }
}

// Device peak and growth since warm-up, host peak and growth.
inline void memory_figures(Result& r, const Device& dev, std::size_t dev_after_warm, double host_after_warm,
                           double host_at_end) {
  const MemoryStats ms = memory_stats(dev);
  r.dev_peak_mb = static_cast<double>(ms.reserved_peak) / 1e6;
  r.dev_growth_mb = (static_cast<double>(ms.reserved_bytes) - static_cast<double>(dev_after_warm)) / 1e6;
  r.host_peak_mb = peak_rss_mb();
  r.host_growth_mb = host_at_end - host_after_warm;
}

}  // namespace streampool::tools
