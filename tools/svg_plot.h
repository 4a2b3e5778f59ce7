#pragma once
// A small SVG line chart writer: throughput and p99 latency against threads, one line per series.

#include <string>
#include <vector>

namespace streampool::bench {

struct Series {
  std::string label;
  bool dashed = false;                      // references (anchors) are dashed
  std::vector<std::pair<int, double>> rps;  // (threads, requests/s)
  std::vector<std::pair<int, double>> p99;  // (threads, ms)
};

// Two panels side by side (requests/s and p99 ms, both log scale, threads on a log2 axis) and a
// legend; throws Error if the file cannot be written.
void write_svg(const std::string& path, const std::string& title, const std::vector<Series>& series);

}  // namespace streampool::bench
