#pragma once
// Graph replays without a CUDA call per replay but the launch: the copies in and out read the
// caller's pointers from page-locked host memory. Internal.
//
// Note [Indirect graph copies]
// A replay must move the caller's inputs into the graph's fixed buffers and its outputs into
// memory the caller owns. Memcpy nodes set per replay (cudaGraphExecMemcpyNodeSetParams1D) cost
// two driver calls per request beside the launch, under the driver's locks: the mlp graph
// stopped at ~260k requests/s on an H200 with them. Instead the graph starts with a copy kernel
// and ends with a copy kernel and a one-thread "advance" kernel, all with fixed parameters. Per
// replay the host writes the pointers into slot (seq % kSlots) of the instance's ring in
// page-locked memory and launches; the kernels read the slot named by the ring's counter
// (system-scope loads), and the advance kernel moves the counter on. The host never reuses a
// slot before the device has moved past it: if the ring is full (kSlots replays queued and not
// run), the replay waits for the stream first. A ring is freed only when the device has passed
// its last replay (rings are pooled, never given back to the system: cudaFreeHost would
// synchronize the device and invalidate other threads' captures).

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace streampool::detail {

constexpr int kIndirectSlots = 8;
constexpr int kIndirectMax = 4;  // tensors per side (the Input's fields; outputs need 2)

struct IndirectRing {
  // Written by the device's advance kernel: replays done. Read by the host, never written.
  std::uint64_t done;
  std::uint64_t pad[7];  // its own cache line
  // Written by the host, read by the device.
  struct Slot {
    const void* src[kIndirectMax];
    void* dst[kIndirectMax];
  } slots[kIndirectSlots];
};

// One side's fixed buffers: inputs (dst fixed, src from the slot) or outputs (src fixed).
struct IndirectSide {
  int n = 0;
  void* fixed[kIndirectMax] = {};
  std::size_t bytes[kIndirectMax] = {};
};

// Adds the copy kernel of one side to `graph` after `deps`. `inputs`: fixed buffers are
// destinations. Returns the node.
cudaError_t add_indirect_copy(cudaGraphNode_t* node, cudaGraph_t graph, const cudaGraphNode_t* deps, std::size_t ndeps,
                              IndirectRing* ring, const IndirectSide& side, bool inputs);
// Adds the advance kernel (ring->done += 1) after `dep`.
cudaError_t add_indirect_advance(cudaGraphNode_t* node, cudaGraph_t graph, cudaGraphNode_t dep, IndirectRing* ring);

// Page-locked rings, pooled. acquire throws GraphError where none can be had; release takes
// the number of replays launched on it and reuses it once the device has done them all.
IndirectRing* acquire_indirect_ring();
void release_indirect_ring(IndirectRing* ring, std::uint64_t launched);

}  // namespace streampool::detail
