#pragma once
// What the HTTP and gRPC server tests share: the example repository, each request's own input,
// and the comparison against its own expected output.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "streampool/device.h"

namespace streampool::server_test {

inline const std::string kRepo = std::string(STREAMPOOL_TEST_SOURCE_DIR) + "/examples/model-repository";
inline const Device kCpu(DeviceKind::cpu, 0);
constexpr double kTol = 2e-5;  // float32: a row of a batched GEMM against the same row alone

// A request's own input: n normal values from its own seed.
inline std::vector<float> input_for(std::uint64_t seed, std::size_t n) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& f : v) f = dist(g);
  return v;
}

// Largest absolute difference; huge when the sizes differ.
inline double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 1e30;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace streampool::server_test
