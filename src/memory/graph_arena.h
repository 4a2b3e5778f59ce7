#pragma once
// GraphArena: the memory of one compiled-module instance (graph.h). Internal.
//
// Note [Graph arenas]
// A captured graph reads and writes fixed addresses, and the thread capturing it must not
// allocate from the device. So every tensor a compiled forward creates lives in its instance's
// arena, one block taken from the caching allocator before the capture. The first run of an
// input signature on a stream plans it: it runs eagerly while the thread's allocations on the
// device are counted (each rounded to 512 bytes, no reuse inside the forward). The capture
// (CUDA) and each replay (CPU) then hand out the same sequence from the arena's start. Arena
// tensors own nothing: their frees and record_stream are no-ops, and the memory lives as long as
// the instance, which frees the block back to the allocator in its stream's order. A forward
// whose allocations depend on its data asks for more than was planned and gets an Error. The
// routing is per thread: other threads' allocations are untouched.

#include <cstddef>

#include "streampool/device.h"

namespace streampool::detail {

class GraphArena {
 public:
  // Counting: take() counts and returns nullptr (the caller allocates as usual).
  GraphArena() = default;
  // Serving: take() carves from [base, base + capacity).
  GraphArena(void* base, std::size_t capacity) : base_(static_cast<char*>(base)), capacity_(capacity) {}

  void* take(std::size_t bytes);
  void rewind() { used_ = 0; }
  std::size_t planned() const { return planned_; }

 private:
  char* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  std::size_t planned_ = 0;
};

// For its lifetime, the calling thread's allocations on `device` go to `arena` (nullptr:
// suspends an enclosing scope, for memory that must outlive the graph, such as a GEMM
// workspace). Scopes nest.
class ArenaScope {
 public:
  ArenaScope(GraphArena* arena, const Device& device);
  ~ArenaScope();
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  GraphArena* previous_arena_;
  Device previous_device_;
};

// The arena the calling thread's allocations on `device` go to, or nullptr.
GraphArena* active_arena(const Device& device);

}  // namespace streampool::detail
