// streampool::begin_exit (process_exit.h), and the main thread's exit sentinel.

#include "streampool/process_exit.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "backend/cuda/exit_gate.h"
#include "ops/cpu/blas.h"
#include "ops/exit_drain.h"

namespace streampool {
namespace {

// Note [Main thread exit]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Libraries build static objects at their first use (oneDNN's JIT kernels, cuBLASLt's
// heuristics) and register their destructors with atexit right then. A thread inside such a
// first use when exit() starts has them destroyed under it (CPU: the exit helper tests crashed
// in most runs; CUDA: a Python daemon thread, 11 exits of 12), since every gate handler was
// registered earlier and so runs later. exit() runs the exiting thread's thread_local
// destructors before any atexit handler (glibc), so the main thread - the one that returns
// from main, and Python's finalizing thread - holds a thread_local sentinel, armed when the
// library is loaded on it, whose destructor runs begin_exit first. Other threads are not
// armed: their thread_locals are destroyed at every thread end, not only at exit; an exit()
// called from one of them relies on the gates' own atexit handlers.
struct MainThreadExit {
  bool armed = false;
  ~MainThreadExit() {
    if (armed) begin_exit();
  }
};
thread_local MainThreadExit tls_main_exit;

__attribute__((constructor)) void arm_main_thread() {
  if (static_cast<long>(getpid()) == static_cast<long>(syscall(SYS_gettid))) tls_main_exit.armed = true;
}

std::mutex drains_mu;  // guards drains
std::vector<void (*)()>* drains = new std::vector<void (*)()>;  // Note [Process lifetime]

}  // namespace

namespace detail {
void add_exit_drain(void (*drain)()) {
  std::lock_guard<std::mutex> lock(drains_mu);
  if (std::find(drains->begin(), drains->end(), drain) == drains->end()) drains->push_back(drain);
}
}  // namespace detail

void begin_exit() {
  std::vector<void (*)()> pending;
  {
    std::lock_guard<std::mutex> lock(drains_mu);
    pending = *drains;
  }
  for (auto drain : pending) drain();  // before the gates: what they finish may still use CUDA
  detail::close_exit_gate();
  detail::cpu::close_onednn();
}

}  // namespace streampool
