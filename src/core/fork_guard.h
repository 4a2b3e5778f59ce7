#pragma once
// Note [Fork safety]
// Stream worker threads and CUDA contexts do not survive fork(): the child has one thread and
// a copy of memory whose locks may be held by threads that no longer exist. Once this process
// has used a device, a pthread_atfork child handler marks every child, and each device entry
// point throws ForkedChildError there before touching any lock or backend state. The parent is
// never affected. Children that need devices are started with spawn or exec.

#include <atomic>

namespace streampool::detail {

extern std::atomic<bool> g_in_forked_child;

// Registers the atfork handler (once); called at the first device use.
void install_fork_handler();

[[noreturn]] void throw_forked_child();

inline void check_not_forked() {
  if (g_in_forked_child.load(std::memory_order_relaxed)) throw_forked_child();
}

}  // namespace streampool::detail
