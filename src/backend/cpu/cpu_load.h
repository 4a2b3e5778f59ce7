#pragma once
// How busy the CPU backend's streams are, for the intra-op pool (Note [CPU intra-op pool]).

namespace streampool::detail {

// Stream tasks running now, over every CPU stream (a relaxed read: a hint, not a count to
// synchronize on).
int cpu_tasks_running();

}  // namespace streampool::detail
