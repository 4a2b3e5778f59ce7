// Stress counterparts of the MPS suite: extended stress (3: mixed churn, and 8 x 100, 16 x 50,
// 4 x 20 at 1024^2), max streams (13: 31 threads x 100
// iterations), wraparound with 1,000 sequential threads (8), and synchronize during active
// use (18). The tsan preset runs these under ThreadSanitizer in CI.

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;

namespace {

class StressTest : public test::DeviceTest {
 protected:
  void SetUp() override {
    test::DeviceTest::SetUp();
    if (IsSkipped()) return;
    pool = streams_per_device() - 1;
  }
  int pool = 0;
};

}  // namespace

TEST_P(StressTest, MaxStreamsThirtyOneThreadsHundredIterations) {
  test::PolicyScope policy(parse_pool_exhausted("error"));  // every thread gets its own stream
  std::atomic<int> wrong{0}, errors{0};
  std::latch start(pool);
  std::vector<std::thread> threads;
  for (int t = 0; t < pool; ++t) {
    threads.emplace_back([&, t] {
      try {
        test::Work w(device, 1 << 12);
        start.arrive_and_wait();
        for (int i = 0; i < 100; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(t, i)));
      } catch (const std::exception& e) {
        ++errors;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StressTest, WraparoundThousandSequentialThreads) {
  test::PolicyScope policy(parse_pool_exhausted("error"));  // only works if every lease returns
  std::atomic<int> wrong{0}, errors{0};
  for (int t = 0; t < 1000; ++t) {
    std::thread([&, t] {
      try {
        test::Work w(device, 256);
        wrong += static_cast<int>(w.run_once(test::unique_scale(t % 64, t / 64)));
      } catch (const std::exception& e) {
        if (++errors < 3) ADD_FAILURE() << e.what();
      }
    }).join();
  }
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StressTest, SynchronizeDuringActiveUse) {
  // 8 workers x 50 iterations while another thread synchronizes the device 10 times.
  std::atomic<int> wrong{0}, done_workers{0}, syncs{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      test::Work w(device, 1 << 14);
      for (int i = 0; i < 50; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(t, i)));
      ++done_workers;
    });
  }
  std::thread syncer([&] {
    for (int k = 0; k < 10; ++k) {
      synchronize(device);
      ++syncs;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  syncer.join();
  for (auto& th : threads) th.join();
  EXPECT_EQ(syncs, 10);
  EXPECT_EQ(done_workers, 8);
  EXPECT_EQ(wrong, 0);
}

TEST_P(StressTest, ExtendedMixedChurnGuardsAndEvents) {
  // Threads come and go (3 waves of 16), each hands work to a neighbour stream through an
  // event, and reads back what the neighbour computed.
  std::atomic<int> wrong{0};
  for (int wave = 0; wave < 3; ++wave) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
      threads.emplace_back([&, t, wave] {
        Stream mine = current_stream(device);
        Stream other = stream_from_pool(device);
        for (int i = 0; i < 20; ++i) {
          std::atomic<int> cell{0};
          int seen = 0;
          mine.enqueue_host("write", [&cell, i] { cell.store(i + 1, std::memory_order_relaxed); });
          Event e;
          e.record(mine);
          other.wait(e);
          other.enqueue_host("read", [&] { seen = cell.load(std::memory_order_relaxed); });
          Event read_done;
          read_done.record(other);
          read_done.synchronize();
          wrong += seen != i + 1;
        }
        test::Work w(device, 1 << 10);
        StreamGuard g(other);
        wrong += static_cast<int>(w.run_once(test::unique_scale(t, wave)));
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

namespace {

// The MPS suite's extended stress (3): `threads` threads x `iters` iterations of a matmul chain
// on (n x n) matrices, each thread its own input and its own expected output (computed here
// first, one thread at a time); every iteration's result must equal it bit for bit.
void matmul_stress(const Device& device, int threads, int iters, std::int64_t n) {
  const DType f = DType::float32;
  Tensor w = randn({n, n}, f, device, 7);
  auto chain = [&](const Tensor& x) { return relu(add(matmul(x, w), x)); };
  std::vector<Tensor> inputs;
  std::vector<std::vector<float>> refs;
  for (int t = 0; t < threads; ++t) {
    inputs.push_back(randn({n, n}, f, device, 100 + t));
    refs.push_back(chain(inputs.back()).to_vector<float>());
  }
  ASSERT_NE(refs[0], refs[1]);
  std::atomic<int> wrong{0}, errors{0};
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        Tensor x = empty(inputs[t].shape(), f, device);
        x.copy_from(inputs[t]);  // on this thread's stream
        start.arrive_and_wait();
        for (int i = 0; i < iters; ++i) wrong += chain(x).to_vector<float>() != refs[t];
      } catch (const std::exception& e) {
        if (++errors < 3) ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(wrong, 0) << threads << " x " << iters << " at " << n << "^2";
}

}  // namespace

TEST_P(StressTest, ExtendedEightThreadsHundredIterations) { matmul_stress(device, 8, 100, 256); }
TEST_P(StressTest, ExtendedSixteenThreadsFiftyIterations) { matmul_stress(device, 16, 50, 256); }
TEST_P(StressTest, ExtendedFourThreadsTwentyIterationsAt1024) { matmul_stress(device, 4, 20, 1024); }

INSTANTIATE_TEST_SUITE_P(Devices, StressTest, STREAMPOOL_DEVICES, test::param_name);
