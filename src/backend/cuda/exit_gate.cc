#include "backend/cuda/exit_gate.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "streampool/error.h"

namespace streampool::detail {
namespace {

struct alignas(64) Slot {
  std::atomic<int> depth{0};  // CUDA calls this thread is inside (nested scopes count)
};

std::mutex slots_mu;                              // guards all_slots, free_slots
std::vector<Slot*>* all_slots = new std::vector<Slot*>;   // never destroyed: read at exit
std::vector<Slot*>* free_slots = new std::vector<Slot*>;  // slots of threads that ended
std::atomic<bool> closing{false};
// Set by the handler registered before the CUDA runtime's own: from then on the runtime may be
// torn down, so even the exiting thread's calls are refused (atexit handlers registered before
// the process's first CUDA use run after that point).
std::atomic<bool> runtime_gone{false};
std::atomic<bool> early_installed{false};
std::atomic<std::thread::id> exiting_thread{};

// The calling thread's slot, taken at its first CUDA call and handed back when it ends. The
// pointer is trivially destructible, so it stays usable while thread_locals are torn down.
thread_local Slot* tls_slot = nullptr;

struct SlotReturn {
  void arm() {}
  ~SlotReturn() {
    if (!tls_slot) return;
    std::lock_guard<std::mutex> lock(slots_mu);
    free_slots->push_back(tls_slot);
    tls_slot = nullptr;
  }
};
thread_local SlotReturn tls_return;

Slot* my_slot() {
  if (!tls_slot) {
    std::lock_guard<std::mutex> lock(slots_mu);
    if (!free_slots->empty()) {
      tls_slot = free_slots->back();
      free_slots->pop_back();
    } else {
      tls_slot = new Slot;
      all_slots->push_back(tls_slot);
    }
    tls_return.arm();
  }
  return tls_slot;
}

void on_exit() {
  // Registered more than once (install_exit_gate_again): the first run, the latest registered,
  // closes the gate and waits; the others find it closed.
  if (closing.load(std::memory_order_seq_cst)) return;
  exiting_thread.store(std::this_thread::get_id(), std::memory_order_seq_cst);
  closing.store(true, std::memory_order_seq_cst);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    bool busy = false;
    {
      std::lock_guard<std::mutex> lock(slots_mu);
      for (Slot* s : *all_slots) {
        // The exiting thread's own slot may be inside a call that is running this handler.
        busy |= s != tls_slot && s->depth.load(std::memory_order_seq_cst) > 0;
      }
    }
    if (!busy || std::chrono::steady_clock::now() > deadline) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void on_exit_early() {
  on_exit();
  runtime_gone.store(true, std::memory_order_seq_cst);
}

std::atomic<int> late_registrations{0};

void install_early() {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(&on_exit_early); });
  early_installed.store(true, std::memory_order_release);
}

}  // namespace

CudaCallScope::CudaCallScope() {
  // Registered before the first CUDA call, so that exit() waits for a thread still inside the
  // CUDA runtime's initialization (seen crashing at exit); registered again once the runtime is
  // up (install_exit_gate), so that it also runs before whatever the runtime registered then.
  if (!early_installed.load(std::memory_order_acquire)) install_early();
  Slot* s = my_slot();
  slot_ = s;
  const int depth = s->depth.fetch_add(1, std::memory_order_seq_cst);
  if (depth == 0 && closing.load(std::memory_order_seq_cst)) {
    if (runtime_gone.load(std::memory_order_seq_cst)) {
      s->depth.fetch_sub(1, std::memory_order_release);
      throw Error("streampool: the process is exiting and the CUDA runtime has shut down; CUDA work is refused "
                  "(an atexit handler registered before the first CUDA use runs after the runtime's teardown; "
                  "Note [Exit while threads work])");
    }
    if (exiting_thread.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      s->depth.fetch_sub(1, std::memory_order_release);
      throw Error("streampool: the process is exiting; CUDA work is refused (Note [Exit while threads work])");
    }
  }
}

CudaCallScope::~CudaCallScope() { static_cast<Slot*>(slot_)->depth.fetch_sub(1, std::memory_order_release); }

void install_exit_gate() {
  static std::once_flag once;  // a second registration: on_exit runs twice, harmlessly
  std::call_once(once, [] { std::atexit(&on_exit); });
}

void install_exit_gate_again() {
  // Bounded: each registration is one atexit entry; a library initializes its statics early on.
  if (late_registrations.fetch_add(1, std::memory_order_relaxed) < 256) std::atexit(&on_exit);
}

void close_exit_gate() { on_exit(); }

}  // namespace streampool::detail

