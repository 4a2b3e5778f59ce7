// Each of four threads runs work on its own pool stream, then the main thread checks it; then a
// module from the registry runs, and a bad configuration is caught as streampool's own
// exception type (the library exports its API and exception types, nothing else).
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
  auto lin = nn::make_module("linear", R"({"in_features": 2, "out_features": 1, "bias": false})");
  lin->load_state_dict({{"weight", full({1, 2}, 0.5, DType::float32, cpu)}}, cpu);
  Tensor x = full({1, 2}, 3.0, DType::float32, cpu);
  ok = ok && (*lin)(x).y.to_vector<float>() == std::vector<float>{3.0f};
  try {
    nn::make_module("linear", R"({"in_features": 2})");
    ok = false;
  } catch (const InvalidArgument&) {
  }
  std::cout << "streampool " << STREAMPOOL_VERSION << " consumer: " << (ok ? "ok" : "WRONG") << "\n";
  return ok ? 0 : 1;
}
