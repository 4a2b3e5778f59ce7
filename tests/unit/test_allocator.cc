// The caching allocator: OOM recovery in parallel (MPS suite test 14), OOM under pressure,
// record_stream semantics and the early-reuse hazard (test 10), 31 threads of random sizes,
// and a steady loop that does not grow.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;
using namespace std::chrono_literals;

namespace {

class AllocatorTest : public test::DeviceTest {
 protected:
  void SetUp() override {
    test::DeviceTest::SetUp();
    if (IsSkipped()) return;
    synchronize(device);
    empty_cache(device);
    baseline = memory_stats(device);
  }
  void TearDown() override {
    if (!test::skip_unless_available(GetParam())) set_memory_limit(device, 0);
  }
  // Fills a fresh int32 tensor with `value` on the current stream and checks it on the host.
  bool op(std::int64_t n, int value) {
    Tensor t = full({n}, value, DType::int32, device);
    std::vector<std::int32_t> v = t.to_vector<std::int32_t>();
    for (std::int32_t x : v)
      if (x != value) return false;
    return true;
  }
  MemoryStats baseline;
};

}  // namespace

TEST_P(AllocatorTest, OomRecoveryParallel) {
  const std::size_t cap = baseline.reserved_bytes + (64u << 20);
  set_memory_limit(device, cap);
  std::atomic<int> ok{0}, bad{0};
  std::latch start(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 7; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 50; ++i) {
        try {
          (op(16384 + 1024 * (i % 7), t * 1000 + i) ? ok : bad)++;
        } catch (const std::exception& e) {
          ++bad;
          ADD_FAILURE() << e.what();
        }
      }
    });
  }
  std::string message;
  threads.emplace_back([&] {
    start.arrive_and_wait();
    try {
      Tensor huge = empty({static_cast<std::int64_t>(cap)}, DType::float32, device);  // 4x the cap
      ADD_FAILURE() << "allocation beyond the cap succeeded";
    } catch (const OutOfMemoryError& e) {
      message = e.what();
    }
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, 350);
  EXPECT_EQ(bad, 0);
  EXPECT_NE(message.find("out of memory"), std::string::npos) << message;
  EXPECT_NE(message.find("tried to allocate"), std::string::npos) << message;
  EXPECT_NE(message.find("limit"), std::string::npos) << message;
  EXPECT_NE(message.find("reserved"), std::string::npos) << message;
  EXPECT_GE(memory_stats(device).ooms, baseline.ooms + 1);
  synchronize(device);
  empty_cache(device);
  EXPECT_EQ(memory_stats(device).reserved_bytes, baseline.reserved_bytes);
  EXPECT_EQ(memory_stats(device).allocated_bytes, baseline.allocated_bytes);
}

TEST_P(AllocatorTest, OomUnderPressure) {
  set_memory_limit(device, baseline.reserved_bytes + (48u << 20));
  std::vector<Tensor> pressure;
  for (int i = 0; i < 10; ++i) pressure.push_back(empty({1 << 20}, DType::float32, device));  // 40 MiB held
  EXPECT_THROW(empty({4 << 20}, DType::float32, device), OutOfMemoryError);
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) (op(4096, t * 100 + i) ? ok : bad)++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, 120);
  EXPECT_EQ(bad, 0);
  pressure.clear();
  EXPECT_NO_THROW(empty({4 << 20}, DType::float32, device));  // the ladder frees the cache
  synchronize(device);
  empty_cache(device);
  EXPECT_EQ(memory_stats(device).reserved_bytes, baseline.reserved_bytes);
}

// Rung 1 of the out-of-memory ladder alone: the cache holds two free 20 MiB segments, a 48 MiB
// request fits no cached segment, they are too little to be recycled for it (Note [Recycling
// segments]), and the cap leaves no room for a new one until the cache goes back to the device.
// Without rung 1 the request fails.
TEST_P(AllocatorTest, OomLadderRungOneGivesTheCacheBack) {
  const std::size_t mib = 1u << 20;
  set_memory_limit(device, baseline.reserved_bytes + 64 * mib);
  {
    std::vector<Tensor> held;
    for (int i = 0; i < 2; ++i) held.push_back(empty({static_cast<std::int64_t>(5 * mib)}, DType::float32, device));
  }
  ASSERT_GE(memory_stats(device).reserved_bytes, baseline.reserved_bytes + 40 * mib) << "the cache holds them";
  const std::uint64_t retries = memory_stats(device).retries;
  Tensor big;
  EXPECT_NO_THROW(big = empty({static_cast<std::int64_t>(12 * mib)}, DType::float32, device));  // 48 MiB
  EXPECT_EQ(memory_stats(device).retries, retries + 1) << "it climbed the ladder";
  EXPECT_LE(memory_stats(device).reserved_bytes, baseline.reserved_bytes + 64 * mib);
  big = Tensor();
  synchronize(device);
  empty_cache(device);
}

// Rung 2 alone: a 40 MiB block freed while another stream (busy for 200 ms) still uses it is a
// pending free, not cache; a second 40 MiB request under a 64 MiB cap succeeds only by waiting
// for that stream's event. Without rung 2 the request fails.
TEST_P(AllocatorTest, OomLadderRungTwoWaitsForPendingFrees) {
  const std::size_t mib = 1u << 20;
  set_memory_limit(device, baseline.reserved_bytes + 64 * mib);
  const Stream other(device, 2);
  {
    Tensor a = empty({static_cast<std::int64_t>(10 * mib)}, DType::float32, device);
    other.enqueue_host("busy", [] { std::this_thread::sleep_for(200ms); });
    a.record_stream(other);
  }  // freed: pending until `other` passes its busy task
  ASSERT_GE(memory_stats(device).pending_frees, 1u);
  const auto start = std::chrono::steady_clock::now();
  Tensor b;
  EXPECT_NO_THROW(b = empty({static_cast<std::int64_t>(10 * mib)}, DType::float32, device));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 100ms) << "served without waiting for the pending free";
  b = Tensor();
  synchronize(device);
  empty_cache(device);
}

// Producer and consumer on two distinct streams (pinned with guards: leasing would give both
// threads the same free stream in turn); the producer's stream is held back by a slow task
// before it writes, so a consumer that does not wait reads stale memory. Called on either side.
void hand_over_rounds(const Device& device, bool consumer_side) {
  const Stream producer_stream(device, 1), consumer_stream(device, 2);
  for (int round = 0; round < 10; ++round) {
    Tensor shared;
    const float value = 3.0f + round + (consumer_side ? 100.0f : 0.0f);
    std::thread producer([&] {
      StreamGuard g(producer_stream);
      producer_stream.enqueue_host("slow", [] { std::this_thread::sleep_for(30ms); });
      Tensor t = full({8192}, value, DType::float32, device);
      if (!consumer_side) hand_over(t, consumer_stream);
      shared = t;
    });
    producer.join();
    std::thread consumer([&] {
      StreamGuard g(consumer_stream);
      if (consumer_side) hand_over(shared, current_stream(device));
      Tensor copy = empty({8192}, DType::float32, device);
      copy.copy_from(shared);
      std::vector<float> v = copy.to_vector<float>();  // waits for the consumer stream only
      for (float x : v) ASSERT_EQ(x, value) << "round " << round;
    });
    consumer.join();
    synchronize(device);
  }
}

TEST_P(AllocatorTest, CrossStreamTensorHandOver) { hand_over_rounds(device, false); }

// hand_over(t, current_stream) on the consumer's thread, the natural place: the consumer waits
// for the stream that made t (it used to wait for itself, and 1 of 10 rounds read stale data).
TEST_P(AllocatorTest, ConsumerSideHandOverWaitsForTheProducer) { hand_over_rounds(device, true); }

TEST_P(AllocatorTest, EarlyReuseWithoutRecordStreamAndNotWithIt) {
  Stream a = Stream(device, 1), b = Stream(device, 2);
  for (bool use_record : {false, true}) {
    std::atomic<bool> gate{false};
    void* first_ptr = nullptr;
    float seen = -1;
    {
      StreamGuard ga(a);
      Tensor x = full({1024}, 7.0, DType::float32, device);
      first_ptr = x.data_ptr();
      Event ready;
      ready.record(a);
      b.wait(ready);
      // b reads x only after the gate opens, long after x is dropped on a.
      b.enqueue_host("gate", [&] {
        while (!gate) std::this_thread::sleep_for(1ms);
      });
      Tensor seen_t = empty({1}, DType::float32, device);
      {
        StreamGuard gb(b);
        seen_t.copy_from(x.slice(0, 0, 1));
      }
      if (use_record) x.record_stream(b);
      x = Tensor();  // freed on a
      Tensor y = full({1024}, -5.0, DType::float32, device);  // same size, same stream
      if (use_record) {
        EXPECT_NE(y.data_ptr(), first_ptr) << "with record_stream the block waits for b";
      } else {
        EXPECT_EQ(y.data_ptr(), first_ptr) << "without record_stream a reuses the block at once";
      }
      a.synchronize();  // y's fill is done before b reads
      gate = true;
      b.synchronize();
      StreamGuard gb(b);
      seen = seen_t.to_vector<float>()[0];
    }
    if (use_record) {
      EXPECT_EQ(seen, 7.0f) << "record_stream kept the memory safe";
    } else {
      EXPECT_EQ(seen, -5.0f) << "the early-reuse hazard is real";
    }
  }
}

// Note [Cross-stream segments]: a miss on one stream takes another stream's whole free segment
// rather than a new one from the device. A busy stream's only under the memory limit (else the
// two streams would be serialized), and then the new stream's work runs after the old stream's
// work that was still using it.
TEST_P(AllocatorTest, CrossStreamSegmentIsReusedAfterTheOldStreamsWork) {
  constexpr std::size_t kFloats = (12u << 20) / sizeof(float);  // 12 MiB: a segment of its own
  Stream a(device, 5), b(device, 6);
  void* first = nullptr;
  {
    DataPtr p = allocate(device, kFloats * sizeof(float), &a);
    first = p.get();
    test::slow_fill(a, static_cast<float*>(p.get()), kFloats, 1.0f, 20000);  // still running at the free
  }
  const MemoryStats before = memory_stats(device);
  set_memory_limit(device, before.reserved_bytes + (4u << 20));  // no room for a new 12 MiB segment
  DataPtr q = allocate(device, kFloats * sizeof(float), &b);
  set_memory_limit(device, 0);
  const MemoryStats after = memory_stats(device);
  EXPECT_EQ(q.get(), first) << "the free segment of stream 5 was not reused";
  EXPECT_EQ(after.device_allocations, before.device_allocations);
  EXPECT_EQ(after.cross_stream_segments, before.cross_stream_segments + 1);
  test::slow_fill(b, static_cast<float*>(q.get()), kFloats, 2.0f, 0);
  a.synchronize();
  std::vector<float> got = test::read_floats(b, static_cast<const float*>(q.get()), kFloats);
  std::size_t stale = 0;
  for (float v : got) stale += v != 2.0f;
  EXPECT_EQ(stale, 0u) << "stream 6 wrote before stream 5's last use of the segment had finished";
}

// The old stream's failure is its own: the new stream orders after it without inheriting it.
TEST_P(AllocatorTest, CrossStreamSegmentDoesNotPassOnTheOldStreamsFailure) {
  constexpr std::size_t kBytes = 12u << 20;
  Stream a(device, 7), b(device, 8);
  {
    DataPtr p = allocate(device, kBytes, &a);
    a.enqueue_host("failing_task", [] {
      std::this_thread::sleep_for(20ms);
      throw std::runtime_error("planted failure");
    });
  }
  const MemoryStats before = memory_stats(device);
  set_memory_limit(device, before.reserved_bytes + (4u << 20));  // stream 7 is busy: only under the limit
  {
    DataPtr q = allocate(device, kBytes, &b);
    set_memory_limit(device, 0);
    EXPECT_EQ(memory_stats(device).cross_stream_segments, before.cross_stream_segments + 1);
    StreamGuard g(b);
    EXPECT_TRUE(op(1024, 3)) << "work on the new stream";
  }
  EXPECT_NO_THROW(b.synchronize());
  EXPECT_THROW(a.synchronize(), AsyncError);
}

// Note [Recycling segments]: a large miss that no free block or whole segment can serve gives
// back whole free segments that cover the new one (after their streams' work), so the reserve
// does not grow; when they cannot cover it, nothing is given back.
TEST_P(AllocatorTest, LargeMissRecyclesWholeFreeSegmentsThatCoverIt) {
  constexpr std::size_t kSmallFloats = (12u << 20) / sizeof(float);  // 12 MiB: a segment each
  constexpr std::size_t kLarge = 30u << 20;
  empty_cache(device);
  Stream a(device, 9), b(device, 10);
  {
    DataPtr p1 = allocate(device, kSmallFloats * sizeof(float), &a);
    DataPtr p2 = allocate(device, kSmallFloats * sizeof(float), &a);
    DataPtr p3 = allocate(device, kSmallFloats * sizeof(float), &a);
    // Still writing when the segment goes back: the release must wait for it (ASan and
    // compute-sanitizer see a write to freed memory otherwise).
    test::slow_fill(a, static_cast<float*>(p1.get()), kSmallFloats, 1.0f, 20000);
  }
  const MemoryStats before = memory_stats(device);
  DataPtr q = allocate(device, kLarge, &b);
  const MemoryStats after = memory_stats(device);
  EXPECT_EQ(after.recycled_segments, before.recycled_segments + 3);
  EXPECT_EQ(after.device_allocations, before.device_allocations + 1);
  EXPECT_LE(after.reserved_bytes, before.reserved_bytes) << "36 MiB of whole free segments covered the 30 MiB miss";
  test::slow_fill(b, static_cast<float*>(q.get()), kLarge / sizeof(float), 2.0f, 0);
  std::vector<float> got = test::read_floats(b, static_cast<const float*>(q.get()), kLarge / sizeof(float));
  std::size_t wrong = 0;
  for (float v : got) wrong += v != 2.0f;
  EXPECT_EQ(wrong, 0u);
  { DataPtr r = allocate(device, kSmallFloats * sizeof(float), &a); }
  const MemoryStats before2 = memory_stats(device);
  DataPtr q2 = allocate(device, kLarge, &b);
  const MemoryStats after2 = memory_stats(device);
  EXPECT_EQ(after2.recycled_segments, before2.recycled_segments) << "12 MiB free cannot cover 30 MiB: kept";
  EXPECT_EQ(after2.reserved_bytes, before2.reserved_bytes + kLarge);
}

TEST_P(AllocatorTest, RecordStreamSemantics) {
  Stream a(device, 3);
  StreamGuard ga(a);
  // Same stream: a no-op, the free is immediate.
  {
    Tensor t = empty({256}, DType::float32, device);
    t.record_stream(a);
  }
  EXPECT_EQ(memory_stats(device).pending_frees, 0u);
  // Eight threads, each on its own stream, record one tensor; one of them is held back.
  Tensor t = full({4096}, 1.0, DType::float32, device);
  void* ptr = t.data_ptr();
  hand_over(t, Stream(device, 4));
  std::atomic<bool> gate{false};
  std::vector<Stream> users;
  std::vector<std::thread> threads;
  std::mutex users_mu;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      Stream s = current_stream(device);
      if (i == 0) s.enqueue_host("hold", [&] {
        while (!gate) std::this_thread::sleep_for(1ms);
      });
      t.record_stream(s);
      std::lock_guard<std::mutex> lock(users_mu);
      users.push_back(s);
    });
  }
  for (auto& th : threads) th.join();
  t = Tensor();
  EXPECT_EQ(memory_stats(device).pending_frees, 1u);
  Tensor other = empty({4096}, DType::float32, device);  // kept: it must not be a candidate below
  EXPECT_NE(other.data_ptr(), ptr) << "reused before every user's event completed";
  gate = true;
  for (const Stream& s : users) s.synchronize();
  Stream(device, 4).synchronize();
  Tensor again = empty({4096}, DType::float32, device);
  EXPECT_EQ(memory_stats(device).pending_frees, 0u);
  EXPECT_EQ(again.data_ptr(), ptr) << "reused once all events completed";
}

TEST_P(AllocatorTest, ThirtyOneThreadsRandomSizesNoLeakNoDoubleHandout) {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 31; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::uniform_int_distribution<std::int64_t> size(16, 1 << 18);  // int32 elements: 64 B .. 1 MiB
      std::vector<std::pair<Tensor, int>> live;
      for (int i = 0; i < 60; ++i) {
        int value = t * 100000 + i;
        live.emplace_back(full({size(rng)}, value, DType::int32, device), value);
        if (live.size() > 3) {
          // A block handed out twice would carry another thread's pattern here.
          auto& [old, v] = live.front();
          for (std::int32_t x : old.to_vector<std::int32_t>()) {
            if (x != v) {
              ++wrong;
              break;
            }
          }
          live.erase(live.begin());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  synchronize(device);
  empty_cache(device);
  MemoryStats s = memory_stats(device);
  EXPECT_EQ(s.allocated_bytes, baseline.allocated_bytes) << "leak";
  EXPECT_EQ(s.reserved_bytes, baseline.reserved_bytes) << "leak";
}

TEST_P(AllocatorTest, SteadyLoopDoesNotGrow) {
  auto step = [&](int i) {
    Tensor a = full({1000, 64}, i, DType::float32, device);
    Tensor b = a.to(DType::float16);
    Tensor c = b.transpose(0, 1).contiguous();
    return c.to_float_vector().size();
  };
  for (int i = 0; i < 20; ++i) step(i);  // warm-up
  MemoryStats warm = memory_stats(device);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(step(i), 64000u);
  MemoryStats after = memory_stats(device);
  EXPECT_EQ(after.reserved_bytes, warm.reserved_bytes);
  EXPECT_EQ(after.device_allocations, warm.device_allocations);
  EXPECT_EQ(after.allocated_bytes, warm.allocated_bytes);
}

TEST_P(AllocatorTest, StatsAndPeaks) {
  reset_peak_stats(device);
  MemoryStats s0 = memory_stats(device);
  {
    Tensor t = empty({1 << 20}, DType::float32, device);
    MemoryStats s1 = memory_stats(device);
    EXPECT_GE(s1.allocated_bytes, s0.allocated_bytes + (4u << 20));
    EXPECT_GE(s1.allocated_peak, s1.allocated_bytes);
    EXPECT_EQ(s1.allocations, s0.allocations + 1);
  }
  MemoryStats s2 = memory_stats(device);
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s2.allocated_peak, s0.allocated_bytes + (4u << 20));
  reset_peak_stats(device);
  EXPECT_EQ(memory_stats(device).allocated_peak, s0.allocated_bytes);
}

TEST_P(AllocatorTest, NoCachingFromEnvironment) {
  auto r = test::run_helper("nocache " + GetParam(), "STREAMPOOL_NO_CACHING=1");
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST_P(AllocatorTest, AllocatorLogNamesEachNewSegment) {
  auto r = test::run_helper("alloclog " + GetParam(), "STREAMPOOL_ALLOCATOR_LOG=1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::size_t lines = 0;
  for (std::size_t at = r.output.find("new segment for 12.00 MiB"); at != std::string::npos;
       at = r.output.find("new segment for 12.00 MiB", at + 1))
    ++lines;
  EXPECT_EQ(lines, 2u) << r.output;
  EXPECT_NE(r.output.find("largest whole free segment"), std::string::npos) << r.output;
  auto quiet = test::run_helper("alloclog " + GetParam());
  EXPECT_EQ(quiet.output.find("streampool allocator:"), std::string::npos) << quiet.output;
}

TEST_P(AllocatorTest, MemoryLimitFromEnvironment) {
  auto r = test::run_helper("limit " + GetParam(), "STREAMPOOL_MEMORY_LIMIT=8MiB");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("out of memory"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Devices, AllocatorTest, STREAMPOOL_DEVICES, test::param_name);

TEST(MemoryLimitSetting, Parse_cpu) {
  EXPECT_EQ(parse_memory_limit("8GiB").bytes, 8ull << 30);
  EXPECT_EQ(parse_memory_limit("512MB").bytes, 512000000u);
  EXPECT_EQ(parse_memory_limit("1048576").bytes, 1048576u);
  EXPECT_EQ(parse_memory_limit("1.5 GiB").bytes, 3ull << 29);
  auto pct = parse_memory_limit("90%");
  EXPECT_TRUE(pct.is_fraction);
  EXPECT_DOUBLE_EQ(pct.fraction, 0.9);
  for (const char* bad : {"", "GiB", "8XB", "0", "-5MB", "150%", "0%", "1.2.3GB", "8 G B"}) {
    EXPECT_THROW(parse_memory_limit(bad), ConfigError) << bad;
  }
}
