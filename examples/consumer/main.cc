// Each of four threads runs work on its own pool stream, then the main thread checks it.
#include <streampool/streampool.h>

#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

int main() {
  using namespace streampool;
  const Device cpu = Device::parse("cpu");
  std::atomic<int> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Stream s = current_stream(cpu);  // leased: this thread's own ordered queue
      for (int i = 0; i < 10; ++i) s.enqueue_host("add", [&sum, t] { sum += t; });
      s.synchronize();
    });
  }
  for (auto& th : threads) th.join();
  synchronize(cpu);
  bool ok = sum == 10 * (0 + 1 + 2 + 3);
  std::cout << "streampool " << STREAMPOOL_VERSION << " consumer: " << (ok ? "ok" : "WRONG") << "\n";
  return ok ? 0 : 1;
}
