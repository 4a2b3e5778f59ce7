#pragma once
// Intra-op parallelism of the CPU kernels (README, "CPU threads"; Note [CPU intra-op pool]).
// Internal.

#include <cstdint>
#include <functional>

namespace streampool::detail::cpu {

// Runs fn(begin, end) over `chunks` ranges that split [0, n) evenly (each a multiple of `align`
// but the last). The calling thread runs chunks itself; helpers of one shared pool take the
// others while cores are idle. Returns when every chunk ran; the first exception of a chunk is
// rethrown there. chunks <= 1 runs fn(0, n) inline.
void parallel_for(std::int64_t n, int chunks, std::int64_t align,
                  const std::function<void(std::int64_t begin, std::int64_t end)>& fn);

// The chunks of an op of `work` units: at most STREAMPOOL_CPU_THREADS, and none under
// `min_per_chunk` units. It depends on the op's shape and the setting only, never on the load,
// so that a result is the same however many threads were free to compute it.
int chunks_for(std::int64_t work, std::int64_t min_per_chunk);

}  // namespace streampool::detail::cpu
