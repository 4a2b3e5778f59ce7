// Counterparts of the MPS suite's static destruction tests (19, 20, 21): a process that exits
// with busy streams, with an atexit handler that synchronizes, or while 8 threads are mid-work
// never crashes or hangs. Each scenario runs 50 times in a child process.

#include <gtest/gtest.h>

#include "support/work.h"

using namespace streampool;

namespace {

class StaticDestructionTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (test::skip_unless_available(GetParam())) GTEST_SKIP() << GetParam() << " not available";
  }
  void run_50(const std::string& scenario) {
    int failures = 0;
    for (int i = 0; i < 50; ++i) {
      auto r = test::run_helper(scenario + " " + GetParam());
      if (r.status != 0) {
        ++failures;
        ADD_FAILURE() << scenario << " run " << i << ": status " << r.status << "\n" << r.output;
        if (failures > 3) break;
      }
    }
    EXPECT_EQ(failures, 0);
  }
};

}  // namespace

TEST_P(StaticDestructionTest, ExitWithBusyStreams) { run_50("busy"); }
TEST_P(StaticDestructionTest, AtexitHandlerSynchronizes) { run_50("atexit"); }
TEST_P(StaticDestructionTest, ExitWhileEightThreadsMidWork) { run_50("midwork"); }

INSTANTIATE_TEST_SUITE_P(Devices, StaticDestructionTest, STREAMPOOL_DEVICES, test::param_name);
