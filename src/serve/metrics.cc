#include "serve/metrics.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace streampool {

double Histogram::quantile(double q) const {
  if (count == 0) return 0.0;
  const double target = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (static_cast<double>(seen) >= target && seen > 0) return i < bounds.size() ? bounds[i] : INFINITY;
  }
  return INFINITY;
}

namespace detail {

namespace {
// Microseconds: 1 us .. 10 s in 1-2-5 steps.
std::vector<double> duration_bounds() {
  std::vector<double> b;
  for (double decade = 1; decade <= 1e6; decade *= 10)
    for (double m : {1.0, 2.0, 5.0}) b.push_back(decade * m);
  b.push_back(1e7);
  return b;
}
std::vector<double> size_bounds() {
  std::vector<double> b;
  for (double s = 1; s <= (1 << 20); s *= 2) b.push_back(s);
  return b;
}
}  // namespace

void ShardedCounter::add(std::uint64_t n) {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  shards_[shard].v.fetch_add(n, std::memory_order_relaxed);
}

std::uint64_t ShardedCounter::load() const {
  std::uint64_t sum = 0;
  for (const auto& s : shards_) sum += s.v.load(std::memory_order_relaxed);
  return sum;
}

AtomicHistogram::AtomicHistogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void AtomicHistogram::observe(double v) {
  const std::size_t i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_milli_.fetch_add(static_cast<std::uint64_t>(std::max(0.0, v) * 1000.0), std::memory_order_relaxed);
}

Histogram AtomicHistogram::snapshot() const {
  Histogram h;
  h.bounds = bounds_;
  h.counts.resize(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) h.counts[i] = counts_[i].load(std::memory_order_relaxed);
  h.count = 0;
  for (auto c : h.counts) h.count += c;  // consistent with the buckets even while observing
  h.sum = static_cast<double>(sum_milli_.load(std::memory_order_relaxed)) / 1000.0;
  return h;
}

QueueCounters::QueueCounters()
    : request_us(duration_bounds()), queue_us(duration_bounds()), compute_us(duration_bounds()), batch_size(size_bounds()) {}

std::string prometheus_text(const BatchQueueMetrics& m, const std::string& name) {
  std::ostringstream o;
  std::string label = "queue=\"";
  for (char c : name) {  // the exposition format escapes \, " and newlines in label values
    if (c == '\\' || c == '"') label += '\\';
    label += c == '\n' ? 'n' : c;
  }
  label += "\"";
  auto counter = [&](const char* metric, const char* help, std::uint64_t v, const char* type = "counter") {
    o << "# HELP " << metric << " " << help << "\n# TYPE " << metric << " " << type << "\n"
      << metric << "{" << label << "} " << v << "\n";
  };
  counter("streampool_request_success_total", "Requests whose result was delivered.", m.completed);
  counter("streampool_request_failure_total", "Requests that failed with their batch's error.", m.failed);
  counter("streampool_request_timeout_total", "Requests whose deadline passed before they ran (not run).", m.timed_out);
  counter("streampool_request_cancelled_total", "Requests cancelled before they ran.", m.cancelled);
  counter("streampool_request_rejected_total", "Requests refused by submit (full, closed or malformed).", m.rejected);
  counter("streampool_request_submitted_total", "Requests accepted by submit.", m.submitted);
  counter("streampool_batches_total", "Batches run.", m.batches);
  counter("streampool_queue_depth", "Requests waiting now.", m.queue_depth, "gauge");
  auto histogram = [&](const char* metric, const char* help, const Histogram& h) {
    o << "# HELP " << metric << " " << help << "\n# TYPE " << metric << " histogram\n";
    std::uint64_t cum = 0;
    for (std::size_t i = 0; i < h.bounds.size(); ++i) {
      cum += h.counts[i];
      o << metric << "_bucket{" << label << ",le=\"" << h.bounds[i] << "\"} " << cum << "\n";
    }
    o << metric << "_bucket{" << label << ",le=\"+Inf\"} " << h.count << "\n";
    o << metric << "_sum{" << label << "} " << h.sum << "\n" << metric << "_count{" << label << "} " << h.count << "\n";
  };
  histogram("streampool_request_duration_us", "Arrival to result, microseconds.", m.request_us);
  histogram("streampool_queue_duration_us", "Arrival to the start of the request's batch, microseconds.", m.queue_us);
  histogram("streampool_compute_duration_us", "Per batch: launch to completion, microseconds.", m.compute_us);
  histogram("streampool_batch_size", "Per batch: rows.", m.batch_size);
  return o.str();
}

}  // namespace detail
}  // namespace streampool
