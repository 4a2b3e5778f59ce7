#pragma once
// Work of a layer above that must finish before the exit gates close (Note [Queues at exit],
// src/serve/batch_queue.cc). Internal.

namespace streampool::detail {

// `drain` runs at the start of every begin_exit (process_exit.h), on the exiting thread, before
// the CUDA gate closes; adding the same function again changes nothing. It must not throw.
void add_exit_drain(void (*drain)());

}  // namespace streampool::detail
