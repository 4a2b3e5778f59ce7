// Note [Indirect graph copies] (graph_io.h): the copy and advance kernels, and the rings' pool.

#include "backend/cuda/graph_io.h"

#include <mutex>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "streampool/error.h"

namespace streampool::detail {
namespace {

__device__ __forceinline__ unsigned long long load_sys(const void* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_sys(void* p, unsigned long long v) {
  asm volatile("st.relaxed.sys.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

constexpr int kThreads = 256;

// One side's tensors: fixed buffers on one end, the slot's pointers on the other.
__global__ void indirect_copy_kernel(IndirectRing* ring, IndirectSide side, bool inputs) {
  __shared__ const char* from[kIndirectMax];
  __shared__ char* to[kIndirectMax];
  if (threadIdx.x == 0) {
    const unsigned long long seq = load_sys(&ring->done);
    const IndirectRing::Slot* slot = &ring->slots[seq % kIndirectSlots];
    for (int i = 0; i < side.n; ++i) {
      if (inputs) {
        from[i] = reinterpret_cast<const char*>(load_sys(&slot->src[i]));
        to[i] = static_cast<char*>(side.fixed[i]);
      } else {
        from[i] = static_cast<const char*>(side.fixed[i]);
        to[i] = reinterpret_cast<char*>(load_sys(&slot->dst[i]));
      }
    }
  }
  __syncthreads();
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t tid = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int i = 0; i < side.n; ++i) {
    const char* s = from[i];
    char* d = to[i];
    const std::size_t bytes = side.bytes[i];
    if (((reinterpret_cast<std::uintptr_t>(s) | reinterpret_cast<std::uintptr_t>(d) | bytes) & 15) == 0) {
      const auto* s4 = reinterpret_cast<const uint4*>(s);
      auto* d4 = reinterpret_cast<uint4*>(d);
      for (std::size_t j = tid; j < bytes / 16; j += stride) d4[j] = s4[j];
    } else {
      for (std::size_t j = tid; j < bytes; j += stride) d[j] = s[j];
    }
  }
}

__global__ void indirect_advance_kernel(IndirectRing* ring) {
  store_sys(&ring->done, load_sys(&ring->done) + 1);
  __threadfence_system();
}

cudaError_t add_kernel(cudaGraphNode_t* node, cudaGraph_t graph, const cudaGraphNode_t* deps, std::size_t ndeps,
                       void* fn, unsigned blocks, unsigned threads, void** args) {
  cudaKernelNodeParams p = {};
  p.func = fn;
  p.gridDim = dim3(blocks);
  p.blockDim = dim3(threads);
  p.sharedMemBytes = 0;
  p.kernelParams = args;
  p.extra = nullptr;
  return cudaGraphAddKernelNode(node, graph, deps, ndeps, &p);
}

// The rings' pool (Note [Indirect graph copies]): free rings, and released rings whose
// replays may still be queued, with how many were launched on each.
class RingPool {
 public:
  IndirectRing* acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::size_t i = 0; i < pending_.size();) {
      if (__atomic_load_n(&pending_[i].first->done, __ATOMIC_ACQUIRE) >= pending_[i].second) {
        free_.push_back(pending_[i].first);
        pending_[i] = pending_.back();
        pending_.pop_back();
      } else {
        ++i;
      }
    }
    if (free_.empty()) {
      constexpr std::size_t kPage = 4096;
      void* page = nullptr;
      // Portable: any device may read it; mapped: with unified addressing its host address is
      // its device address.
      const cudaError_t st = cudaHostAlloc(&page, kPage, cudaHostAllocPortable | cudaHostAllocMapped);
      if (st != cudaSuccess) {
        (void)cudaGetLastError();
        throw GraphError(std::string("no page-locked memory for a graph's copy ring: ") + cudaGetErrorString(st));
      }
      auto* rings = static_cast<IndirectRing*>(page);
      for (std::size_t i = 0; i < kPage / sizeof(IndirectRing); ++i) {
        rings[i] = IndirectRing{};
        free_.push_back(&rings[i]);  // never freed
      }
    }
    IndirectRing* r = free_.back();
    free_.pop_back();
    return r;
  }
  void release(IndirectRing* r, std::uint64_t launched) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace_back(r, launched);
  }

 private:
  std::mutex mu_;  // guards free_, pending_
  std::vector<IndirectRing*> free_;
  std::vector<std::pair<IndirectRing*, std::uint64_t>> pending_;
};

RingPool& pool() {
  static auto* p = new RingPool;  // Note [Process lifetime]
  return *p;
}

}  // namespace

cudaError_t add_indirect_copy(cudaGraphNode_t* node, cudaGraph_t graph, const cudaGraphNode_t* deps, std::size_t ndeps,
                              IndirectRing* ring, const IndirectSide& side, bool inputs) {
  std::size_t largest = 1;
  for (int i = 0; i < side.n; ++i) largest = std::max(largest, side.bytes[i]);
  // 16 bytes per thread per step, four steps per thread for a large tensor, at most 264 blocks.
  const std::size_t per_block = static_cast<std::size_t>(kThreads) * 16 * 4;
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>(264, (largest + per_block - 1) / per_block));
  IndirectSide s = side;
  bool in = inputs;
  void* args[] = {&ring, &s, &in};
  return add_kernel(node, graph, deps, ndeps, reinterpret_cast<void*>(indirect_copy_kernel), blocks, kThreads, args);
}

cudaError_t add_indirect_advance(cudaGraphNode_t* node, cudaGraph_t graph, cudaGraphNode_t dep, IndirectRing* ring) {
  void* args[] = {&ring};
  return add_kernel(node, graph, &dep, 1, reinterpret_cast<void*>(indirect_advance_kernel), 1, 1, args);
}

IndirectRing* acquire_indirect_ring() { return pool().acquire(); }
void release_indirect_ring(IndirectRing* ring, std::uint64_t launched) { pool().release(ring, launched); }

}  // namespace streampool::detail
