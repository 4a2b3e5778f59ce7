#pragma once
// `streampool bench --server URL`: a load generator for the Open Inference Protocol over HTTP,
// in the manner of Triton's perf_analyzer's concurrency mode.

#include <string>
#include <vector>

namespace streampool::tools {

struct ServerBenchOptions {
  std::string url;                  // http://IPv4:PORT
  std::vector<std::string> models;  // model names on the server
  std::vector<int> concurrency;     // requests always outstanding (one connection each)
  double duration = 5;              // seconds timed per configuration, after a 1 s warm-up
  std::string protocol = "http-binary";  // or http-json
  int min_len = 16, max_len = 128;  // sequence lengths (models with a -1 second dimension)
  std::string json_path;
};

// Returns the exit status: 0, or 1 when a request failed or a result differed from its input's
// reference (that input sent alone before the run).
int run_server_bench(const ServerBenchOptions& o);

}  // namespace streampool::tools
