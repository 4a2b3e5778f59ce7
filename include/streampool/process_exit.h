#pragma once
// Ending the process while other threads still work (Note [Exit while threads work]).

#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

// Closes the exit gate now, on the calling thread, instead of at exit(): from then on a CUDA
// call started by any other thread raises Error, and this call waits (at most two seconds)
// until no other thread is inside one. exit() does the same by itself, but only once its own
// turn comes among the atexit handlers: a thread making its first call into a CUDA library
// (cuBLASLt's algorithm heuristics) while the process exits registers that library's static
// destructors after the gate's handler, so they run first and the thread crashes inside the
// library. Call this before returning from main (or calling exit) while such threads may run;
// the Python package calls it from its atexit hook. The calling thread's own CUDA work goes on
// being served. Without CUDA it does nothing.
void begin_exit();

}  // namespace streampool
STREAMPOOL_API_END
