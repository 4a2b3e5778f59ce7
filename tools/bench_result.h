#pragma once
// What one bench configuration reports, shared by the bench's modes.

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <string>

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

}  // namespace streampool::tools
