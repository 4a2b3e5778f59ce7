#pragma once
// `streampool bench --modes batched`: client threads submit batch-1 requests to one BatchQueue.

#include <cstdint>
#include <vector>

#include "bench_result.h"
#include "workloads.h"

namespace streampool::tools {

struct BatchedConfig {
  int clients = 1;
  int inflight = 1;        // requests in flight in total (closed loop: = clients)
  bool open = false;       // open loop: inflight / clients per client
  double duration = 0.6;
  std::int64_t max_batch = 256;
  int workers = 2;
  std::int64_t max_delay_us = 0;
  bool graph = false;
  std::vector<std::int64_t> length_buckets;
  std::int64_t min_len = 0, max_len = 0;  // > 0: request lengths mixed in [min_len, max_len] (encoder, BERT)
};

Result run_batched(const bench::Workload& w, const BatchedConfig& c);

}  // namespace streampool::tools
