#pragma once
// The timed window of the threaded probes: start the threads waiting on `go`, let them count
// their requests for `seconds`, stop and join them; requests per second over all of them.

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

inline double run_window(std::vector<std::thread>& pool, std::atomic<bool>& go, std::atomic<bool>& stop,
                         const std::vector<long>& counts, double seconds) {
  go = true;
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long total = 0;
  for (long c : counts) total += c;
  return static_cast<double>(total) / secs;
}
