#pragma once
// CUDA graph capture for the graph layer (Backend::capture). Internal.

#include <functional>
#include <memory>

#include "core/backend_interface.h"

namespace streampool::detail {

// Captures `body`'s work on `stream` (thread-local capture mode) and instantiates a graph that
// copies io.inputs in, runs it, and copies io.outputs out; each copy's pointers are set per
// replay. Throws GraphError naming the reason; the stream is usable afterwards.
std::unique_ptr<GraphExec> capture_graph(StreamImpl& stream, GraphIo& io, const std::function<void()>& body);

}  // namespace streampool::detail
