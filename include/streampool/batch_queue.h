#pragma once
// BatchQueue: dynamic batching. Many threads submit small requests; workers concatenate them
// along dimension 0 into batches, run the module once per batch, and hand every request its own
// rows of the result.
//
// A request is an nn::Input whose x has one or more rows along dimension 0. It is checked
// against the module's InputSpec when submitted (a malformed request fails alone, there), then
// waits in a lane of requests that can share a batch: same dtype, same fixed dimensions, same
// input device (the host, or the workers' device), and, where the module cannot pad, the same
// length. Requests of different lengths batch padded to the longest with a key_padding_mask
// where the module takes one (TransformerEncoderLayer, BertModel), and get their own length back;
// `length_buckets` keeps one long request from padding a batch of short ones.
//
// Order: higher priority first; within a priority, earliest deadline first, then arrival. A
// worker takes the most urgent request and fills the batch from its lane up to max_batch_size
// rows, waiting at most max_delay after that request's arrival for company. A request whose
// deadline passes while it waits fails with TimeoutError at once (not when a worker is next
// free) and is never run; cancel() removes a waiting request.
//
// Workers: each its own pool stream, num_workers per replica; replicas may sit on different
// devices (a CPU worker and a CUDA worker in one queue), workers of one replica share its
// weights. A worker forms and launches the next batch while the previous one runs (up to
// pipeline_depth in flight) when the next one is full; a partial batch waits until the
// worker's previous batch completes (continuous batching: under load batches grow rather than
// the number of small launches). Futures are fulfilled when their batch's event completes,
// never by a device-wide synchronize. Host inputs (CPU tensors) go to any worker: a GPU worker copies the
// batch through page-locked memory and returns host results; inputs on a GPU stay with the
// workers of that GPU. Results are views of one batch output (no copy per request).
//
// Errors: an exception in a batch reaches every future of that batch with its original type;
// the queue goes on serving. After an asynchronous failure on a worker's stream, the batches
// already in flight behind it on that stream fail with it too (never a wrong result).
// Shutdown: close() stops accepting, drains every accepted request, joins the workers; the
// destructor closes. submit() after close, or in a forked child, throws QueueClosedError.
//
// Shared state: the lanes, the queue depth and the closed flag are guarded by one mutex, taken
// once per submit and once per batch (a batch takes all its requests under one lock); counters
// and histograms are atomics; each request's result is guarded by its own ready flag.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "streampool/batch_future.h"
#include "streampool/graph.h"
#include "streampool/nn/module.h"
#include "streampool/serve_metrics.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

enum class FullPolicy {
  block,   // submit() waits for room (at most full_timeout if it is set, then QueueFullError)
  reject,  // submit() throws QueueFullError at once
};

struct BatchOptions {
  std::int64_t max_batch_size = 64;       // rows per batch, 1 .. 1,048,576
  std::chrono::microseconds max_delay{0};  // how long a batch's first request may wait for company
  int num_workers = 1;                     // per replica (single-module constructors: on its device)
  std::size_t max_queue = 0;               // requests waiting at most; 0: unbounded
  FullPolicy full_policy = FullPolicy::block;
  std::chrono::microseconds full_timeout{0};     // block: 0 waits for room as long as it takes
  std::chrono::microseconds default_timeout{0};  // a request's deadline when it names none; 0: none
  std::vector<std::int64_t> length_buckets;      // ascending upper bounds of padded lengths; empty: one
  std::optional<Device> output_device;           // where results go; default: the device of the request's x
  int pipeline_depth = 2;                        // batches in flight per worker, 1 .. 16
  bool graph = false;                            // run modules compiled (graph.h) with batch buckets
  std::string name = "default";                  // the `queue` label of metrics_text()
};

struct SubmitOptions {
  int priority = 0;  // higher runs first
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::optional<std::chrono::microseconds> timeout;  // deadline = now + timeout (not with deadline)
};

// A loaded module (or its compiled form) and how many workers run it.
struct Replica {
  std::shared_ptr<const nn::Module> module;
  std::shared_ptr<CompiledModule> compiled;  // set: the workers replay it; module may stay empty
  int workers = 0;                           // 0: BatchOptions::num_workers
};

class BatchQueue {
 public:
  explicit BatchQueue(std::shared_ptr<const nn::Module> module, const BatchOptions& options = {});
  explicit BatchQueue(std::shared_ptr<CompiledModule> compiled, const BatchOptions& options = {});
  BatchQueue(std::vector<Replica> replicas, const BatchOptions& options = {});
  ~BatchQueue();  // close()
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // From any thread. The request's tensors must be ready in the calling thread's current stream
  // order (as for any op); they are kept alive until the request completes. Throws
  // InvalidArgument for a malformed request, QueueFullError, QueueClosedError.
  BatchFuture submit(nn::Input in, const SubmitOptions& options = {});

  // Stops accepting, runs everything accepted, joins the workers. Idempotent; from any thread
  // but a worker's (an on_ready callback).
  void close();
  bool closed() const;

  BatchQueueMetrics metrics() const;
  // The Prometheus text exposition format: streampool_request_success_total, ..._failure_total,
  // ..._timeout_total, ..._cancelled_total, ..._rejected_total, streampool_batches_total,
  // streampool_queue_depth, and histograms streampool_request_duration_us,
  // streampool_queue_duration_us, streampool_compute_duration_us, streampool_batch_size.
  std::string metrics_text() const;
  const BatchOptions& options() const;

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace streampool
STREAMPOOL_API_END
