#pragma once
// The BatchQueue's metrics (batch_queue.h): counters and histograms, read as a snapshot or in
// the Prometheus text format.

#include <cstdint>
#include <string>
#include <vector>

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

// A snapshot of one histogram: counts[i] observations <= bounds[i] (and above bounds[i - 1]);
// counts.back() those above every bound (Prometheus' +Inf bucket is the total).
struct Histogram {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;  // bounds.size() + 1 entries, not cumulative
  double sum = 0;
  std::uint64_t count = 0;
  double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
  // The upper bound of the bucket holding quantile q (0..1): an upper estimate.
  double quantile(double q) const;
};

struct BatchQueueMetrics {
  std::uint64_t submitted = 0;   // accepted by submit()
  std::uint64_t rejected = 0;    // refused by submit(): full queue, closed, malformed
  std::uint64_t completed = 0;   // results delivered
  std::uint64_t failed = 0;      // failed with their batch's error
  std::uint64_t timed_out = 0;   // deadline passed before they ran
  std::uint64_t cancelled = 0;
  std::uint64_t batches = 0;     // batches run
  std::uint64_t queue_depth = 0; // requests waiting now
  std::vector<std::uint64_t> worker_batches;  // batches run by each worker, in replica order
  Histogram request_us;          // arrival to result
  Histogram queue_us;            // arrival to the start of its batch
  Histogram compute_us;          // per batch: launch to completion
  Histogram batch_size;          // per batch: rows
};

}  // namespace streampool
STREAMPOOL_API_END
