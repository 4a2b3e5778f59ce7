// Counterparts of the MPS suite's thread boundary (4), stream assignment (5), wraparound (8, 16)
// and thread churn (9, 17) tests.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <set>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;
using test::Work;

namespace {

class StreamPoolTest : public test::DeviceTest {
 protected:
  void SetUp() override {
    test::DeviceTest::SetUp();
    if (IsSkipped()) return;
    pool = streams_per_device() - 1;
    ASSERT_EQ(leased_stream_count(device), 0) << "a previous test leaked a lease";
  }
  int pool = 0;
};

// Runs `n` threads that each lease a stream, do real work on it, and hold it until all have
// arrived; returns the streams they saw.
std::vector<Stream> run_concurrent(const Device& device, int n, std::atomic<int>& wrong) {
  std::vector<Stream> seen(n, Stream(device, 0));
  std::latch all_leased(n);
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      Work w(device);
      seen[t] = current_stream(device);
      wrong += static_cast<int>(w.run_once(test::unique_scale(t, 0)));
      all_leased.arrive_and_wait();
      wrong += static_cast<int>(w.run_once(test::unique_scale(t, 1)));
    });
  }
  for (auto& th : threads) th.join();
  return seen;
}

}  // namespace

TEST_P(StreamPoolTest, ThreadBoundaryMainThreadUsesDefaultStream) {
  Stream s = current_stream(device);
  EXPECT_TRUE(s.is_default());
  EXPECT_EQ(s, default_stream(device));
  EXPECT_EQ(leased_stream_count(device), 0);
  Work w(device);
  EXPECT_EQ(w.run_once(0.25f), 0u);
}

TEST_P(StreamPoolTest, ThreadBoundaryLiveWorkersGetDistinctPoolStreams) {
  std::atomic<int> wrong{0};
  std::latch hold(pool + 1);
  std::vector<Stream> seen(pool, Stream(device, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < pool; ++t) {
    threads.emplace_back([&, t] {
      seen[t] = current_stream(device);
      EXPECT_EQ(current_stream(device), seen[t]) << "a thread's stream must be stable";
      hold.arrive_and_wait();
    });
  }
  // Wait until every worker holds its lease, then look.
  while (leased_stream_count(device) < pool) std::this_thread::yield();
  EXPECT_EQ(leased_stream_count(device), pool);
  hold.arrive_and_wait();
  for (auto& th : threads) th.join();
  std::set<std::uint32_t> ids;
  for (const Stream& s : seen) {
    EXPECT_FALSE(s.is_default()) << "a worker thread must not get the default stream";
    ids.insert(s.id());
  }
  EXPECT_EQ(static_cast<int>(ids.size()), pool) << "live workers must have distinct streams";
  EXPECT_EQ(leased_stream_count(device), 0) << "leases return when threads exit";
  EXPECT_EQ(wrong, 0);
}

TEST_P(StreamPoolTest, StreamAssignmentLeaseIsExclusive) {
  // While a thread holds a lease, 200 short-lived threads never get its stream.
  Stream held(device, 0);
  std::atomic<bool> done{false}, ready{false};
  std::thread holder([&] {
    held = current_stream(device);
    ready = true;
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!ready) std::this_thread::yield();
  int collisions = 0;
  for (int i = 0; i < 200; ++i) {
    Stream got(device, 0);
    std::thread([&] { got = current_stream(device); }).join();
    collisions += got == held;
  }
  done = true;
  holder.join();
  EXPECT_EQ(collisions, 0);
}

TEST_P(StreamPoolTest, StreamAssignmentGuardAndSetCurrent) {
  std::thread([&] {
    Stream mine = current_stream(device);
    Stream other = default_stream(device);
    {
      StreamGuard g(other);
      EXPECT_EQ(current_stream(device), other);
      EXPECT_EQ(g.original(), mine);
      {
        StreamGuard inner(Stream(device, mine.id() == 1 ? 2 : 1));
        EXPECT_NE(current_stream(device), other);
      }
      EXPECT_EQ(current_stream(device), other) << "nested guard restores the outer override";
      Work w(device);
      EXPECT_EQ(w.run_once(0.5f), 0u);  // runs on the guarded stream
    }
    EXPECT_EQ(current_stream(device), mine);
    set_current_stream(other);
    EXPECT_EQ(current_stream(device), other);
    EXPECT_THROW(set_current_stream(Stream(device, 100000)), InvalidArgument);
    EXPECT_THROW(Stream(device, 100000).synchronize(), InvalidArgument);
  }).join();
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, StreamAssignmentReleaseCurrentThreadStream) {
  std::thread([&] {
    (void)current_stream(device);
    EXPECT_EQ(leased_stream_count(device), 1);
    release_current_thread_stream();
    EXPECT_EQ(leased_stream_count(device), 0);
    Stream again = current_stream(device);
    EXPECT_FALSE(again.is_default());
    EXPECT_EQ(leased_stream_count(device), 1);
  }).join();
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, StreamFromPoolIsNotLeased) {
  for (int i = 0; i < 2 * pool; ++i) {
    Stream s = stream_from_pool(device);
    EXPECT_FALSE(s.is_default());
    EXPECT_LT(static_cast<int>(s.id()), pool + 1);
  }
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, WraparoundSixtyFourSequentialThreads) {
  // Under `error`, 64 sequential threads only succeed if every exit returns its lease.
  test::PolicyScope policy(parse_pool_exhausted("error"));
  std::atomic<int> wrong{0}, failures{0};
  for (int t = 0; t < 64; ++t) {
    std::thread([&, t] {
      try {
        Work w(device);
        Stream s = current_stream(device);
        if (s.is_default()) ++failures;
        wrong += static_cast<int>(w.run_once(test::unique_scale(t, 0)));
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++failures;
      }
    }).join();
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, WraparoundFortyConcurrentShare) {
  test::PolicyScope policy(parse_pool_exhausted("share"));
  std::atomic<int> wrong{0};
  std::vector<Stream> seen = run_concurrent(device, 40, wrong);
  std::set<std::uint32_t> ids;
  for (const Stream& s : seen) {
    EXPECT_FALSE(s.is_default());
    ids.insert(s.id());
  }
  EXPECT_EQ(static_cast<int>(ids.size()), std::min(pool, 40)) << "every pool stream is used";
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, WraparoundFortyConcurrentWait) {
  test::PolicyScope policy(parse_pool_exhausted("wait"));
  std::unique_ptr<std::atomic<int>[]> in_use(new std::atomic<int>[pool + 1]);
  for (int i = 0; i <= pool; ++i) in_use[i] = 0;
  std::atomic<int> wrong{0}, shared{0}, max_leased{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 40; ++t) {
    threads.emplace_back([&, t] {
      Work w(device);
      Stream s = current_stream(device);  // blocks while all pool streams are leased
      if (in_use[s.id()].exchange(1) != 0) ++shared;
      int now = leased_stream_count(device);
      int prev = max_leased.load();
      while (now > prev && !max_leased.compare_exchange_weak(prev, now)) {
      }
      for (int i = 0; i < 3; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(t, i)));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      in_use[s.id()] = 0;  // the lease itself returns just after, at thread exit
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(shared, 0) << "under `wait` no two live threads share a stream";
  EXPECT_LE(max_leased, pool);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, WraparoundFortyConcurrentErrorAndTimedWait) {
  std::latch leased(pool);
  std::atomic<bool> release{false};
  std::vector<std::thread> holders;
  for (int t = 0; t < pool; ++t) {
    holders.emplace_back([&] {
      (void)current_stream(device);
      leased.count_down();
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  leased.wait();
  {
    test::PolicyScope policy(parse_pool_exhausted("error"));
    std::atomic<int> refused{0};
    std::vector<std::thread> extra;
    for (int t = pool; t < 40; ++t) {
      extra.emplace_back([&] {
        try {
          (void)current_stream(device);
        } catch (const PoolExhaustedError& e) {
          if (std::string(e.what()).find("STREAMPOOL_POOL_EXHAUSTED=error") != std::string::npos) ++refused;
        }
      });
    }
    for (auto& th : extra) th.join();
    EXPECT_EQ(refused, 40 - pool);
  }
  {
    test::PolicyScope policy(parse_pool_exhausted("wait:50"));
    auto t0 = std::chrono::steady_clock::now();
    bool timed_out = false;
    std::thread([&] {
      try {
        (void)current_stream(device);
      } catch (const PoolExhaustedError&) {
        timed_out = true;
      }
    }).join();
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_TRUE(timed_out);
    EXPECT_GE(ms, 45.0);
  }
  release = true;
  for (auto& th : holders) th.join();
  EXPECT_EQ(leased_stream_count(device), 0);
  test::PolicyScope policy(parse_pool_exhausted("error"));
  bool ok = false;
  std::thread([&] { ok = !current_stream(device).is_default(); }).join();
  EXPECT_TRUE(ok) << "after the holders exit, leasing works again";
}

TEST_P(StreamPoolTest, ThreadChurnFiftySequential) {
  std::atomic<int> wrong{0};
  std::set<std::uint32_t> ids;
  for (int t = 0; t < 50; ++t) {
    std::thread([&, t] {
      Work w(device);
      ids.insert(current_stream(device).id());
      wrong += static_cast<int>(w.run_once(test::unique_scale(t, 0)));
    }).join();
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_LE(static_cast<int>(ids.size()), pool);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(StreamPoolTest, ThreadChurnTenRoundsOfEightConcurrent) {
  test::PolicyScope policy(parse_pool_exhausted("error"));  // any leak would surface as an error
  std::atomic<int> wrong{0};
  for (int round = 0; round < 10; ++round) {
    std::vector<Stream> seen = run_concurrent(device, 8, wrong);
    std::set<std::uint32_t> ids;
    for (const Stream& s : seen) ids.insert(s.id());
    EXPECT_EQ(ids.size(), 8u) << "round " << round;
    EXPECT_EQ(leased_stream_count(device), 0) << "round " << round;
  }
  EXPECT_EQ(wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(Devices, StreamPoolTest, STREAMPOOL_DEVICES, test::param_name);
