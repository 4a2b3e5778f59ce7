#include "memory/graph_arena.h"

#include <algorithm>
#include <string>

#include "streampool/error.h"

namespace streampool::detail {
namespace {

struct Routing {
  GraphArena* arena = nullptr;
  Device device;
};
thread_local Routing tls_routing;  // this thread's only; trivially destructible

constexpr std::size_t kAlign = 512;

}  // namespace

void* GraphArena::take(std::size_t bytes) {
  const std::size_t size = (std::max<std::size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
  if (!base_) {
    planned_ += size;
    return nullptr;
  }
  if (used_ + size > capacity_) {
    throw Error("graph: the forward asked for more memory than when it was planned (" + std::to_string(used_ + size) +
                " of " + std::to_string(capacity_) +
                " bytes): its allocations depend on the data, so it cannot be compiled");
  }
  void* p = base_ + used_;
  used_ += size;
  return p;
}

ArenaScope::ArenaScope(GraphArena* arena, const Device& device)
    : previous_arena_(tls_routing.arena), previous_device_(tls_routing.device) {
  tls_routing.arena = arena;
  tls_routing.device = device;
}

ArenaScope::~ArenaScope() {
  tls_routing.arena = previous_arena_;
  tls_routing.device = previous_device_;
}

GraphArena* active_arena(const Device& device) {
  const Routing& r = tls_routing;
  return r.arena && r.device == device ? r.arena : nullptr;
}

}  // namespace streampool::detail
