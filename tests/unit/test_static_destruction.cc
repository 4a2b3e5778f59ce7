// Counterparts of the MPS suite's static destruction tests (19, 20, 21): a process that exits
// with busy streams, with an atexit handler that synchronizes, or while 8 threads are mid-work
// never crashes or hangs. Each scenario runs 50 times in a child process (the GEMM ones 200).

#include <gtest/gtest.h>

#include <cstdlib>

#include "support/work.h"

using namespace streampool;

namespace {

class StaticDestructionTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (test::skip_unless_available(GetParam())) GTEST_SKIP() << GetParam() << " not available";
  }
  void run_50(const std::string& scenario) { run_n(scenario, 50); }
  void run_n(const std::string& scenario, int runs) {
    int failures = 0;
    for (int i = 0; i < runs; ++i) {
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

// Exit while GEMMs run or are queued (Note [CPU exit gate]: OpenBLAS tears down in _dl_fini).
// Each crashed 10 of 10 runs on the CPU before the gate; 200 runs each, zero crashes allowed.
// STREAMPOOL_TEST_EXIT_RUNS lowers the count where every run is slow (the asan preset).
int gemm_runs() {
  const char* v = std::getenv("STREAMPOOL_TEST_EXIT_RUNS");
  return v && std::atoi(v) > 0 ? std::atoi(v) : 200;
}
TEST_P(StaticDestructionTest, ReturnWhileLargeGemmRuns) { run_n("gemm_return", gemm_runs()); }
TEST_P(StaticDestructionTest, ExitWhileEightThreadsRunGemms) { run_n("gemm_exit_midwork", gemm_runs()); }
TEST_P(StaticDestructionTest, ReturnWithGemmsQueuedByJoinedThreads) { run_n("gemm_joined", gemm_runs()); }
TEST_P(StaticDestructionTest, AtexitSynchronizesWhileGemmsLoop) { run_n("gemm_atexit", gemm_runs()); }

// Exit while compiled modules replay on four threads and build (plan, capture) on two.
TEST_P(StaticDestructionTest, ReturnWhileGraphsReplayAndCapture) { run_n("graph_exit", gemm_runs() / 4); }
// streampool::begin_exit: other threads' CUDA calls refused, the caller served, exit clean.
TEST_P(StaticDestructionTest, BeginExitRefusesOtherThreadsAndServesTheCaller) { run_n("begin_exit", gemm_runs() / 4); }

// Exit with a live BatchQueue serving six clients (the queue never destroyed), and with requests
// waiting in a static queue whose destructor must drain them during exit.
TEST_P(StaticDestructionTest, ReturnWhileBatchQueueServes) { run_n("queue_exit_live", gemm_runs() / 4); }
TEST_P(StaticDestructionTest, StaticBatchQueueDrainsAtExit) { run_n("queue_exit_static", gemm_runs() / 4); }
// Note [Queues at exit]: begin_exit runs what live queues accepted before it closes the gates.
TEST_P(StaticDestructionTest, BeginExitDrainsLiveQueuesFirst) { run_n("begin_exit_drains_queue", 3); }

INSTANTIATE_TEST_SUITE_P(Devices, StaticDestructionTest, STREAMPOOL_DEVICES, test::param_name);
