// Counterpart of the MPS suite's simple parallel test (2): 2 and 4 threads each run work on
// their own stream and every result is checked.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;

namespace {

class SimpleParallelTest : public test::DeviceTest {
 protected:
  void run(int threads, int iterations) {
    std::atomic<int> wrong{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        test::Work w(device, 1 << 16);
        for (int i = 0; i < iterations; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(t, i)));
      });
    }
    for (auto& th : pool) th.join();
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(leased_stream_count(device), 0);
  }
  // No `Device device;` member here: it hid the fixture's, so every /cuda instance ran on the CPU.
};

}  // namespace

TEST_P(SimpleParallelTest, TwoThreads) { run(2, 50); }
TEST_P(SimpleParallelTest, FourThreads) { run(4, 50); }

TEST_P(SimpleParallelTest, MainAndWorkersTogether) {
  std::atomic<int> wrong{0};
  std::thread worker([&] {
    test::Work w(device);
    for (int i = 0; i < 30; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(1, i)));
  });
  test::Work w(device);
  for (int i = 0; i < 30; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(0, i)));
  worker.join();
  EXPECT_EQ(wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(Devices, SimpleParallelTest, STREAMPOOL_DEVICES, test::param_name);
