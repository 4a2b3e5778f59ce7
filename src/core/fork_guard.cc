#include "core/fork_guard.h"

#include <pthread.h>

#include <mutex>

#include "streampool/error.h"

namespace streampool::detail {

std::atomic<bool> g_in_forked_child{false};

namespace {
void on_fork_child() { g_in_forked_child.store(true, std::memory_order_relaxed); }
}  // namespace

void install_fork_handler() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, &on_fork_child); });
}

void throw_forked_child() {
  throw ForkedChildError(
      "streampool: device use in a child process created by fork() after the parent used a "
      "device; stream workers and CUDA contexts do not survive fork. Start worker processes "
      "with spawn or exec (posix_spawn, multiprocessing 'spawn') instead");
}

}  // namespace streampool::detail
