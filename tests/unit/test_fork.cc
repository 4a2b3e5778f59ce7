// Counterparts of the MPS suite's fork tests (1, 22, 23, 24): the child is refused with
// ForkedChildError, the parent continues, forking while 8 threads work is safe, and fork + exec
// (or spawn) of a fresh process can use devices.

#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "support/work.h"

extern char** environ;

using namespace streampool;

namespace {

class ForkTest : public test::DeviceTest {
 protected:
  void SetUp() override {
    test::DeviceTest::SetUp();
    if (IsSkipped()) return;
    test::Work w(device);
    ASSERT_EQ(w.run_once(0.5f), 0u);  // the parent has used the device before forking
  }
  // No `Device device;` member here: it hid the fixture's, so every /cuda instance ran on the CPU.
};

// In the child: every device entry point must throw ForkedChildError. Returns the exit status.
int child_probe(const Device& device) {
  int refused = 0, total = 0;
  auto expect_refused = [&](auto&& fn) {
    ++total;
    try {
      fn();
    } catch (const ForkedChildError& e) {
      refused += std::string(e.what()).find("spawn") != std::string::npos;
    } catch (...) {
    }
  };
  expect_refused([&] { (void)current_stream(device); });
  expect_refused([&] { synchronize(device); });
  expect_refused([&] { Stream(device, 1).synchronize(); });
  expect_refused([&] { Stream(device, 1).enqueue_host("x", [] {}); });
  expect_refused([&] { (void)stream_from_pool(device); });
  expect_refused([&] { Event e; e.record(Stream(device, 1)); });
  expect_refused([&] { self_test(device); });
  expect_refused([&] { (void)device_count(DeviceKind::cuda); });
  return refused == total ? 0 : 10 + refused;
}

// The child's exit status; 200 if it had not exited after 30 s (killed then): a child that
// touches a device lock held by a thread that did not survive fork() hangs, and the test must
// fail, not hang with it.
int wait_child(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 3000; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return 200;
}

int fork_and_probe(const Device& device) {
  pid_t pid = fork();
  if (pid == 0) _exit(child_probe(device));
  return wait_child(pid);
}

}  // namespace

TEST_P(ForkTest, ForkSafetyChildIsRefused) { EXPECT_EQ(fork_and_probe(device), 0); }

TEST_P(ForkTest, ForkSafetyParentContinues) {
  ASSERT_EQ(fork_and_probe(device), 0);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      test::Work w(device);
      for (int i = 0; i < 20; ++i) wrong += static_cast<int>(w.run_once(test::unique_scale(t, i)));
    });
  }
  for (auto& th : threads) th.join();
  test::Work w(device);
  EXPECT_EQ(w.run_once(0.75f), 0u);
  EXPECT_EQ(wrong, 0);
}

TEST_P(ForkTest, ForkWithEightActiveThreads) {
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, iterations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      test::Work w(device);
      for (int i = 0; !stop; ++i) {
        wrong += static_cast<int>(w.run_once(test::unique_scale(t, i % 500)));
        ++iterations;
      }
    });
  }
  while (iterations < 40) std::this_thread::yield();
  for (int k = 0; k < 5; ++k) EXPECT_EQ(fork_and_probe(device), 0) << "fork " << k;
  int before = iterations;
  while (iterations < before + 40) std::this_thread::yield();  // the workers keep going
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(leased_stream_count(device), 0);
}

TEST_P(ForkTest, ForkExecFreshProcessWorks) {
  pid_t pid = fork();
  if (pid == 0) {
    const char* argv[] = {test::helper_path(), "selftest", GetParam().c_str(), nullptr};
    execv(argv[0], const_cast<char**>(argv));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_P(ForkTest, SpawnFreshProcessWorks) {
  const char* argv[] = {test::helper_path(), "selftest", GetParam().c_str(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

INSTANTIATE_TEST_SUITE_P(Devices, ForkTest, STREAMPOOL_DEVICES, test::param_name);
