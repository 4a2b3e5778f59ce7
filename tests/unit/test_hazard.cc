// The cross-stream hazard with real device work (the MPS suite's cross-stream tensor, 10): a slow
// producer (a spinning kernel on CUDA, a sleeping host task on the CPU) and a consumer on another
// stream. With the event wait (or hand_over) the consumer sees the producer's result; without
// it, on the GPU, the consumer reads the stale data, so these tests can tell a working
// Stream::wait from a no-op one.

#include <gtest/gtest.h>

#include <future>
#include <thread>
#include <vector>

#include "support/work.h"

using namespace streampool;

namespace {

constexpr std::size_t kN = 1 << 16;
constexpr int kSpinUs = 20000;  // far longer than a 256 KB copy takes
constexpr int kRounds = 5;

class CrossStreamHazardTest : public test::DeviceTest {};

// Elements of `got` that are not `want`.
int wrong(const std::vector<float>& got, float want) {
  int n = 0;
  for (float v : got) n += v != want;
  return n;
}

}  // namespace

TEST_P(CrossStreamHazardTest, EventWaitOrdersAConsumerAfterASlowProducer) {
  test::DeviceBuffer buf(device, kN);
  Stream producer = current_stream(device);
  Stream consumer = stream_from_pool(device);
  ASSERT_NE(producer, consumer) << "the consumer must run on another stream";
  for (int r = 0; r < kRounds; ++r) {
    buf.fill_now(0.0f);
    const float value = static_cast<float>(r + 1);
    test::slow_fill(producer, buf.data(), kN, value, kSpinUs);
    Event done;
    done.record(producer);
    consumer.wait(done);
    EXPECT_EQ(wrong(buf.read(consumer), value), 0) << "round " << r << ": the consumer read before the producer wrote";
    producer.synchronize();
  }
}

TEST_P(CrossStreamHazardTest, HandOverToAnotherThreadWaitsForASlowProducer) {
  for (int r = 0; r < kRounds; ++r) {
    const float value = static_cast<float>(100 + r);
    std::promise<Tensor> made;
    std::promise<void> consumed;
    std::thread producer([&] {
      Tensor t = zeros({static_cast<std::int64_t>(kN)}, DType::float32, device);  // on this thread's stream
      test::slow_fill(current_stream(device), t.data<float>(), kN, value, kSpinUs);
      made.set_value(t);  // no synchronize: the consumer's hand_over must order it
      consumed.get_future().wait();  // keep this thread's stream leased meanwhile
    });
    int bad = -1;
    std::thread consumer([&] {
      Tensor t = made.get_future().get();
      Stream mine = current_stream(device);
      EXPECT_NE(mine, t.allocation_stream());
      hand_over(t, mine);
      bad = wrong(t.to_vector<float>(), value);
      consumed.set_value();
    });
    consumer.join();
    producer.join();
    EXPECT_EQ(bad, 0) << "round " << r << ": hand_over did not order the consumer after the producer";
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, CrossStreamHazardTest, STREAMPOOL_DEVICES, test::param_name);

// The control: without the wait, the GPU runs the consumer's copy while the producer still spins,
// and the copy reads the old contents. (CUDA only: on the CPU the same would be a data race
// between two host threads, undefined behaviour rather than an observation.)
class CrossStreamHazardControl : public test::DeviceTest {};

TEST_P(CrossStreamHazardControl, WithoutTheWaitTheConsumerReadsStaleData) {
  test::DeviceBuffer buf(device, kN);
  Stream producer = current_stream(device);
  Stream consumer = stream_from_pool(device);
  ASSERT_NE(producer, consumer);
  int stale_rounds = 0;
  for (int r = 0; r < kRounds; ++r) {
    buf.fill_now(0.0f);
    test::slow_fill(producer, buf.data(), kN, static_cast<float>(r + 1), kSpinUs);
    const std::vector<float> got = buf.read(consumer);  // no wait
    stale_rounds += got[0] == 0.0f;
    producer.synchronize();
  }
  EXPECT_GT(stale_rounds, 0) << "no round showed the hazard: the tests above could not see a missing wait";
  std::printf("stale rounds without the wait: %d of %d\n", stale_rounds, kRounds);
}

INSTANTIATE_TEST_SUITE_P(Devices, CrossStreamHazardControl, testing::Values(std::string("cuda")), test::param_name);
