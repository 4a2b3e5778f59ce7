// Events, cross-stream ordering, and asynchronous errors.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "support/work.h"

using namespace streampool;
using namespace std::chrono_literals;

namespace {

class EventTest : public test::DeviceTest {
 protected:
  Stream pool_stream(int k) { return Stream(device, static_cast<std::uint32_t>(1 + k % (streams_per_device() - 1))); }
};

}  // namespace

TEST_P(EventTest, NeverRecordedIsComplete) {
  Event e;
  EXPECT_TRUE(e.query());
  EXPECT_NO_THROW(e.synchronize());
  EXPECT_FALSE(e.device().has_value());
  EXPECT_NO_THROW(pool_stream(0).wait(e));
}

TEST_P(EventTest, RecordQuerySynchronize) {
  Stream s = pool_stream(0);
  std::atomic<bool> gate{false};
  s.enqueue_host("gate", [&] {
    while (!gate) std::this_thread::sleep_for(1ms);
  });
  Event e;
  e.record(s);
  EXPECT_EQ(e.device(), device);
  EXPECT_FALSE(e.query());
  EXPECT_FALSE(s.query());
  gate = true;
  e.synchronize();
  EXPECT_TRUE(e.query());
  s.synchronize();
  EXPECT_TRUE(s.query());
}

TEST_P(EventTest, ElapsedMsMeasuresStreamWork) {
  Stream s = pool_stream(1);
  Event start(true), end(true);
  start.record(s);
  s.enqueue_host("sleep", [] { std::this_thread::sleep_for(20ms); });
  end.record(s);
  end.synchronize();
  double ms = start.elapsed_ms(end);
  EXPECT_GE(ms, 15.0);
  EXPECT_LT(ms, 2000.0);
  Event untimed;
  untimed.record(s);
  untimed.synchronize();
  EXPECT_THROW(untimed.elapsed_ms(end), InvalidArgument);
  Event never(true);
  EXPECT_THROW(start.elapsed_ms(never), InvalidArgument);
}

TEST_P(EventTest, RecordOnAnotherDeviceKindThrows) {
  Event e;
  e.record(pool_stream(0));
  Device other = device.kind == DeviceKind::cpu ? Device(DeviceKind::cuda, 0) : Device(DeviceKind::cpu);
  if (test::skip_unless_available(other.str() == "cpu" ? "cpu" : "cuda")) GTEST_SKIP() << "one device kind only";
  Stream foreign(other, 1);
  EXPECT_THROW(e.record(foreign), InvalidArgument);
  EXPECT_THROW(foreign.wait(e), InvalidArgument);
}

// A stream that waits on an event always sees the producer's writes.
TEST_P(EventTest, CrossStreamOrderingWaitSeesProducerWrites) {
  Stream producer = pool_stream(2), consumer = pool_stream(3);
  int wrong = 0;
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> value{0};
    int seen = -1;
    producer.enqueue_host("produce", [&] {
      std::this_thread::sleep_for(2ms);
      value.store(round + 1, std::memory_order_relaxed);
    });
    Event ready;
    ready.record(producer);
    consumer.wait(ready);
    consumer.enqueue_host("consume", [&] { seen = value.load(std::memory_order_relaxed); });
    consumer.synchronize();
    wrong += seen != round + 1;
    producer.synchronize();
  }
  EXPECT_EQ(wrong, 0);
}

// Companion: without the wait the hazard is real on the CPU backend (streams truly run
// concurrently), which is what makes the test above meaningful.
TEST_P(EventTest, CrossStreamOrderingWithoutWaitRaceIsObservable) {
  if (device.kind != DeviceKind::cpu) GTEST_SKIP() << "CUDA runs host tasks on one callback thread";
  Stream producer = pool_stream(4), consumer = pool_stream(5);
  std::atomic<int> value{0};
  int seen = -1;
  std::atomic<bool> consumer_done{false};
  producer.enqueue_host("produce", [&] {
    while (!consumer_done) std::this_thread::sleep_for(1ms);  // the consumer runs first, for sure
    value = 1;
  });
  consumer.enqueue_host("consume", [&] {
    seen = value.load();
    consumer_done = true;
  });
  consumer.synchronize();
  producer.synchronize();
  EXPECT_EQ(seen, 0) << "without an event wait the consumer read before the producer wrote";
  EXPECT_EQ(value, 1);
}

TEST_P(EventTest, AsyncErrorRaisedAtSynchronizeNamingTheOp) {
  Stream s = pool_stream(6);
  int after = 0;
  s.enqueue_host("first_bad_op", [] { throw std::runtime_error("boom"); });
  s.enqueue_host("second_bad_op", [] { throw std::runtime_error("second"); });
  s.enqueue_host("later_ok", [&] { after = 1; });
  try {
    s.synchronize();
    FAIL() << "expected AsyncError";
  } catch (const AsyncError& e) {
    EXPECT_EQ(e.op(), "first_bad_op");
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(s.str()), std::string::npos) << e.what();
    EXPECT_THROW(std::rethrow_exception(e.cause()), std::runtime_error);
  }
  EXPECT_EQ(after, 1) << "later work still ran";
  EXPECT_NO_THROW(s.synchronize()) << "the error was delivered once";
}

TEST_P(EventTest, AsyncErrorReachesEventsRecordedAfterIt) {
  Stream s = pool_stream(7);
  Event before, after;
  before.record(s);
  s.enqueue_host("bad_op", [] { throw std::runtime_error("kaput"); });
  after.record(s);
  EXPECT_NO_THROW(before.synchronize());
  EXPECT_THROW(after.synchronize(), AsyncError);
  EXPECT_THROW(s.synchronize(), AsyncError);
  EXPECT_NO_THROW(s.synchronize());
}

TEST_P(EventTest, AsyncErrorReachesAWaitingStream) {
  if (device.kind != DeviceKind::cpu) GTEST_SKIP() << "CUDA events carry no host-task errors across streams";
  Stream producer = pool_stream(8), consumer = pool_stream(9);
  producer.enqueue_host("bad_producer", [] { throw std::runtime_error("bad data"); });
  Event e;
  e.record(producer);
  consumer.wait(e);
  try {
    consumer.synchronize();
    FAIL() << "expected AsyncError";
  } catch (const AsyncError& err) {
    EXPECT_NE(std::string(err.what()).find("bad_producer"), std::string::npos) << err.what();
  }
  EXPECT_THROW(producer.synchronize(), AsyncError);
}

TEST_P(EventTest, SynchronizeFromOwnTaskIsRefused) {
  if (device.kind != DeviceKind::cpu) GTEST_SKIP() << "CUDA forbids CUDA calls in host tasks";
  Stream s = pool_stream(10);
  s.enqueue_host("self_sync", [s] { s.synchronize(); });
  try {
    s.synchronize();
    FAIL() << "expected AsyncError";
  } catch (const AsyncError& e) {
    EXPECT_NE(std::string(e.what()).find("wait for itself"), std::string::npos) << e.what();
  }
}

TEST_P(EventTest, DeviceSynchronizeRaisesStreamErrors) {
  Stream s = pool_stream(11);
  s.enqueue_host("bad_op", [] { throw std::runtime_error("device-wide"); });
  EXPECT_THROW(synchronize(device), AsyncError);
  EXPECT_THROW(s.synchronize(), AsyncError) << "the stream's owner still learns of it";
  EXPECT_NO_THROW(synchronize(device));
}

TEST_P(EventTest, EmptyHostTaskIsRejected) {
  EXPECT_THROW(pool_stream(0).enqueue_host("empty", nullptr), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Devices, EventTest, STREAMPOOL_DEVICES, test::param_name);
