#pragma once
// Ending the process while other threads still work (Note [Exit while threads work]).

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

// First closes every live BatchQueue and waits (at most two seconds in all) for it to finish
// the requests it had accepted, while CUDA still serves its workers (Note [Queues at exit]);
// its submit() then throws QueueClosedError. Then closes the exit gates, on the calling
// thread: from then on a CUDA call started by any
// other thread raises Error, and this waits (at most two seconds) until no other thread is
// inside one; CPU GEMMs move from oneDNN to OpenBLAS, and this waits until none is inside
// oneDNN. The calling thread's own CUDA work, and all CPU work, go on being served.
// Why: a thread inside its first call into a library that builds static objects then (oneDNN's
// kernels, cuBLASLt's heuristics) registers their destructors after every gate's atexit
// handler, so exit() would destroy them under it. exit() on the main thread (returning from
// main; Python's finalization) runs this by itself before any atexit handler (Note [Main
// thread exit]); call it yourself before calling exit() from another thread. The Python
// package also calls it from its atexit hook.
void begin_exit();

}  // namespace streampool
STREAMPOOL_API_END
