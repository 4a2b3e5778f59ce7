#pragma once
// The BatchQueue's counters and histograms: atomics only, so recording never takes a lock and
// never waits for a reader. Internal.

#include <array>
#include <atomic>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "streampool/serve_metrics.h"

namespace streampool::detail {

// Fixed bucket bounds (Prometheus style); each observation is one relaxed increment.
class AtomicHistogram {
 public:
  explicit AtomicHistogram(std::vector<double> bounds);
  void observe(double v);
  Histogram snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_milli_{0};  // sum * 1000, so an integer add suffices
};

struct QueueCounters {
  QueueCounters();
  std::atomic<std::uint64_t> submitted{0}, rejected{0}, completed{0}, failed{0}, timed_out{0}, cancelled{0}, batches{0};
  AtomicHistogram request_us, queue_us, compute_us, batch_size;
};

// The Prometheus text exposition format of `m`, every series labelled queue="<name>".
std::string prometheus_text(const BatchQueueMetrics& m, const std::string& name);

}  // namespace streampool::detail
