// CUDA graphs: capture a body in thread-local mode, wrap it between copy nodes, replay.
//
// The body is captured on its own (thread-local mode: other threads' allocations, frees, copies
// and synchronization leave it valid; ../shared/anchors/capture_threads.cu measured it), then
// placed as a child graph between the copies in and out. By default those are kernels that read
// the caller's pointers from a ring in page-locked memory (Note [Indirect graph copies],
// graph_io.h): a replay writes a slot and launches, one CUDA call per request. With
// STREAMPOOL_GRAPH_INDIRECT_IO=0 they are memcpy nodes whose pointers a replay sets first.

#include "backend/cuda/cuda_graph.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/exit_gate.h"
#include "backend/cuda/graph_io.h"
#include "streampool/error.h"
#include "streampool/settings.h"

namespace streampool::detail {
namespace {

[[noreturn]] void graph_fail(const char* call, cudaError_t st, const std::string& where) {
  throw GraphError(std::string(call) + " failed on " + where + ": " + cudaGetErrorString(st) + " (" +
                   cudaGetErrorName(st) + ")");
}
#define GRAPH_CHECK(expr, where)                                  \
  do {                                                            \
    cudaError_t st_ = (expr);                                     \
    if (st_ != cudaSuccess) graph_fail(#expr, st_, (where));      \
  } while (0)

// The kernels and the copies / fills of a captured graph, child graphs included: what one
// request launches (issue "Direct mode at the measured limits": launches counted, not estimated).
struct NodeCounts {
  int kernels = 0, copies = 0;
};
void count_nodes(cudaGraph_t g, NodeCounts& n, const std::string& where) {
  std::size_t count = 0;
  GRAPH_CHECK(cudaGraphGetNodes(g, nullptr, &count), where);
  std::vector<cudaGraphNode_t> nodes(count);
  if (count) GRAPH_CHECK(cudaGraphGetNodes(g, nodes.data(), &count), where);
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    GRAPH_CHECK(cudaGraphNodeGetType(node, &type), where);
    if (type == cudaGraphNodeTypeKernel) {
      ++n.kernels;
    } else if (type == cudaGraphNodeTypeMemcpy || type == cudaGraphNodeTypeMemset) {
      ++n.copies;
    } else if (type == cudaGraphNodeTypeGraph) {
      cudaGraph_t child = nullptr;
      GRAPH_CHECK(cudaGraphChildGraphNodeGetGraph(node, &child), where);
      count_nodes(child, n, where);
    }
  }
}

class CudaGraphExec final : public GraphExec {
 public:
  // ring: the indirect copies' ring (in_nodes / out_nodes empty), or nullptr (memcpy nodes).
  CudaGraphExec(cudaGraph_t graph, cudaGraphExec_t exec, std::vector<cudaGraphNode_t> in_nodes,
                std::vector<cudaGraphNode_t> out_nodes, GraphIo io, std::string where, NodeCounts body,
                IndirectRing* ring)
      : graph_(graph), exec_(exec), in_nodes_(std::move(in_nodes)), out_nodes_(std::move(out_nodes)), io_(std::move(io)),
        where_(std::move(where)), body_(body), ring_(ring),
        seq_(ring ? __atomic_load_n(&ring->done, __ATOMIC_ACQUIRE) : 0) {}

  int body_kernels() const override { return body_.kernels; }
  int body_copies() const override { return body_.copies; }

  ~CudaGraphExec() override {
    try {
      CudaCallScope scope;  // refused once the process exits: then the graph is left to the OS
      // An in-flight launch is not cut short: CUDA frees the executable graph when it completes,
      // and the ring goes back to its pool only once the device has passed every replay.
      (void)cudaGraphExecDestroy(exec_);
      (void)cudaGraphDestroy(graph_);
      if (ring_) release_indirect_ring(ring_, seq_);
    } catch (...) {
    }
  }

  void replay(StreamImpl& s, const void* const* src, void* const* dst) override {
    auto stream = static_cast<cudaStream_t>(s.native_handle());
    if (ring_) {
      // Note [Indirect graph copies]: the slot of this replay may be reused only once the
      // device has moved kIndirectSlots replays past it.
      if (seq_ - __atomic_load_n(&ring_->done, __ATOMIC_ACQUIRE) >= static_cast<std::uint64_t>(kIndirectSlots)) {
        GRAPH_CHECK(cudaStreamSynchronize(stream), where_);
        if (seq_ - __atomic_load_n(&ring_->done, __ATOMIC_ACQUIRE) >= static_cast<std::uint64_t>(kIndirectSlots)) {
          throw GraphError("graph replay on " + where_ + ": the device did not run this graph's earlier replays");
        }
      }
      IndirectRing::Slot& slot = ring_->slots[seq_ % kIndirectSlots];
      for (std::size_t i = 0; i < io_.inputs.size(); ++i) slot.src[i] = src[i];
      for (std::size_t i = 0; i < io_.outputs.size(); ++i) slot.dst[i] = dst[i];
      std::atomic_thread_fence(std::memory_order_release);  // the slot before the launch
      GRAPH_CHECK(cudaGraphLaunch(exec_, stream), where_);
      ++seq_;
      return;
    }
    for (std::size_t i = 0; i < in_nodes_.size(); ++i) {
      GRAPH_CHECK(cudaGraphExecMemcpyNodeSetParams1D(exec_, in_nodes_[i], io_.inputs[i].ptr, src[i], io_.inputs[i].bytes,
                                                     cudaMemcpyDeviceToDevice),
                  where_);
    }
    for (std::size_t i = 0; i < out_nodes_.size(); ++i) {
      GRAPH_CHECK(cudaGraphExecMemcpyNodeSetParams1D(exec_, out_nodes_[i], dst[i], io_.outputs[i].ptr,
                                                     io_.outputs[i].bytes, cudaMemcpyDeviceToDevice),
                  where_);
    }
    GRAPH_CHECK(cudaGraphLaunch(exec_, stream), where_);
  }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  std::vector<cudaGraphNode_t> in_nodes_, out_nodes_;
  GraphIo io_;
  std::string where_;
  NodeCounts body_;
  IndirectRing* ring_;  // Note [Indirect graph copies]; nullptr with memcpy nodes
  std::uint64_t seq_;   // replays launched on ring_ (guarded by the caller: one replay at a time)
};

IndirectSide side_of(const std::vector<GraphIo::Buffer>& buffers) {
  IndirectSide side;
  for (const auto& b : buffers) {
    side.fixed[side.n] = b.ptr;
    side.bytes[side.n] = b.bytes;
    ++side.n;
  }
  return side;
}

}  // namespace

std::unique_ptr<GraphExec> capture_graph(StreamImpl& s, GraphIo& io, const std::function<void()>& body) {
  CudaCallScope scope;
  CudaDeviceGuard guard(s.stream.device().index);
  const std::string where = s.stream.str();
  auto stream = static_cast<cudaStream_t>(s.native_handle());
  GRAPH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), where);
  s.capturing.store(true, std::memory_order_relaxed);
  cudaGraph_t body_graph = nullptr;
  try {
    body();
  } catch (...) {
    s.capturing.store(false, std::memory_order_relaxed);
    // End the capture whatever happened, so the stream takes work again; the partial graph goes.
    if (cudaStreamEndCapture(stream, &body_graph) == cudaSuccess && body_graph) cudaGraphDestroy(body_graph);
    (void)cudaGetLastError();
    throw;
  }
  s.capturing.store(false, std::memory_order_relaxed);
  GRAPH_CHECK(cudaStreamEndCapture(stream, &body_graph), where + " (the capture was invalidated)");

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<cudaGraphNode_t> in_nodes, out_nodes;
  NodeCounts body_counts;
  IndirectRing* ring = nullptr;  // taken after the capture: the capturing thread may not allocate
  try {
    count_nodes(body_graph, body_counts, where);
    GRAPH_CHECK(cudaGraphCreate(&graph, 0), where);
    const bool indirect = settings().graph_indirect_io && io.inputs.size() <= kIndirectMax &&
                          io.outputs.size() <= kIndirectMax && !io.inputs.empty() && !io.outputs.empty();
    if (indirect) {
      // Note [Indirect graph copies]: copy in, the body, copy out, advance the ring.
      ring = acquire_indirect_ring();
      cudaGraphNode_t in = nullptr, body_node = nullptr, out = nullptr, advance = nullptr;
      GRAPH_CHECK(add_indirect_copy(&in, graph, nullptr, 0, ring, side_of(io.inputs), true), where);
      GRAPH_CHECK(cudaGraphAddChildGraphNode(&body_node, graph, &in, 1, body_graph), where);
      GRAPH_CHECK(add_indirect_copy(&out, graph, &body_node, 1, ring, side_of(io.outputs), false), where);
      GRAPH_CHECK(add_indirect_advance(&advance, graph, out, ring), where);
    } else {
      // Copies in, the body after all of them, copies out after it. Until the first replay sets
      // them, each copy node copies its own buffer onto itself: never run.
      for (const auto& b : io.inputs) {
        cudaGraphNode_t n = nullptr;
        GRAPH_CHECK(cudaGraphAddMemcpyNode1D(&n, graph, nullptr, 0, b.ptr, b.ptr, b.bytes, cudaMemcpyDeviceToDevice),
                    where);
        in_nodes.push_back(n);
      }
      cudaGraphNode_t body_node = nullptr;
      GRAPH_CHECK(cudaGraphAddChildGraphNode(&body_node, graph, in_nodes.data(), in_nodes.size(), body_graph), where);
      for (const auto& b : io.outputs) {
        cudaGraphNode_t n = nullptr;
        GRAPH_CHECK(cudaGraphAddMemcpyNode1D(&n, graph, &body_node, 1, b.ptr, b.ptr, b.bytes, cudaMemcpyDeviceToDevice),
                    where);
        out_nodes.push_back(n);
      }
    }
    GRAPH_CHECK(cudaGraphInstantiate(&exec, graph, 0), where);
  } catch (...) {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaGraphDestroy(body_graph);
    if (ring) release_indirect_ring(ring, __atomic_load_n(&ring->done, __ATOMIC_ACQUIRE));  // never launched
    throw;
  }
  cudaGraphDestroy(body_graph);  // the child node holds its own copy
  return std::make_unique<CudaGraphExec>(graph, exec, std::move(in_nodes), std::move(out_nodes), io, where,
                                         body_counts, ring);
}

}  // namespace streampool::detail
