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

// A counter many threads add to at once: one cache line per shard, a thread's shard fixed by a
// thread-local index, so concurrent adds do not contend on one line.
class ShardedCounter {
 public:
  void add(std::uint64_t n = 1);
  std::uint64_t load() const;

 private:
  static constexpr int kShards = 16;
  struct alignas(64) Shard {
    std::atomic<std::uint64_t> v{0};
  };
  Shard shards_[kShards];
};

struct QueueCounters {
  QueueCounters();
  ShardedCounter submitted;  // every client thread adds to it
  std::atomic<std::uint64_t> rejected{0}, completed{0}, failed{0}, timed_out{0}, cancelled{0}, batches{0};
  AtomicHistogram request_us, queue_us, compute_us, batch_size;
};

// The Prometheus text exposition format of `m`, every series labelled queue="<name>".
std::string prometheus_text(const BatchQueueMetrics& m, const std::string& name);

}  // namespace streampool::detail
