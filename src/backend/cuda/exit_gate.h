#pragma once
// Note [Exit while threads work]
// exit() runs atexit handlers and static destructors while other threads may be inside CUDA
// calls, and the CUDA runtime's own exit-time teardown (module unregistration, context
// destruction) can crash such a thread (seen: a segfault in about 1 of 800 exits with eight
// threads mid-work). At the first CUDA use the runtime registers an atexit handler - after the
// CUDA runtime registered its own, so ours runs first - that closes a gate: from then on a
// thread that starts a CUDA call gets an Error instead (except the exiting thread itself, so
// that user atexit handlers may still synchronize), and the handler waits, at most two
// seconds, until no thread is inside a CUDA call. Each thread counts its own depth in its own
// cache line: the hot path writes no shared memory.
// A second handler is registered just before the first CUDA call, so it runs after the
// runtime's teardown; once it has run, every CUDA call is refused, the exiting thread's too: a
// user's atexit handler registered before the process first used CUDA (it runs after the
// teardown) gets an Error from synchronize instead of a crash (seen: 4 of 4 runs crashed).
// The one window left: a thread inside its first call into a CUDA library that builds statics
// (cuBLASLt's heuristics) when exit() starts; they are registered after every gate handler, so
// exit() destroys them under the thread (Python daemon threads: 11 of 12 exits crashed).
// streampool::begin_exit (process_exit.h) closes the gate before exit(), and waits for it.

namespace streampool::detail {

class CudaCallScope {
 public:
  CudaCallScope();  // throws Error once the process is exiting (outermost scope only)
  ~CudaCallScope();
  CudaCallScope(const CudaCallScope&) = delete;
  CudaCallScope& operator=(const CudaCallScope&) = delete;

 private:
  void* slot_;
};

// Registers the exit handler (once); called after the CUDA runtime is initialized.
void install_exit_gate();
// Registers it again (up to 256 times), after a call into a CUDA library that may have built
// static objects of its own on first use (cuBLASLt's handle creation and algorithm heuristics:
// seen crashing at exit inside cublasLtMatmulAlgoGetHeuristic when their statics, destroyed by
// exit() before a gate registered earlier ran, were still in use by another thread). The latest
// registration runs first, before those statics' destructors.
void install_exit_gate_again();
// What the handler does, now, on the calling thread (streampool::begin_exit, process_exit.h).
void close_exit_gate();

}  // namespace streampool::detail

#define STREAMPOOL_CUDA_SCOPE ::streampool::detail::CudaCallScope streampool_cuda_scope_
