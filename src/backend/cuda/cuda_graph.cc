// CUDA graphs: capture a body in thread-local mode, wrap it between copy nodes, replay.
//
// The body is captured on its own (thread-local mode: other threads' allocations, frees, copies
// and synchronization leave it valid; ../shared/anchors/capture_threads.cu measured it), then
// placed as a child graph between one memcpy node per input and one per output. A replay sets
// those nodes' pointers to the caller's tensors and launches once: one launch per request.

#include "backend/cuda/cuda_graph.h"

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/exit_gate.h"
#include "streampool/error.h"

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
  CudaGraphExec(cudaGraph_t graph, cudaGraphExec_t exec, std::vector<cudaGraphNode_t> in_nodes,
                std::vector<cudaGraphNode_t> out_nodes, GraphIo io, std::string where, NodeCounts body)
      : graph_(graph), exec_(exec), in_nodes_(std::move(in_nodes)), out_nodes_(std::move(out_nodes)), io_(std::move(io)),
        where_(std::move(where)), body_(body) {}

  int body_kernels() const override { return body_.kernels; }
  int body_copies() const override { return body_.copies; }

  ~CudaGraphExec() override {
    try {
      CudaCallScope scope;  // refused once the process exits: then the graph is left to the OS
      // An in-flight launch is not cut short: CUDA frees the executable graph when it completes.
      (void)cudaGraphExecDestroy(exec_);
      (void)cudaGraphDestroy(graph_);
    } catch (...) {
    }
  }

  void replay(StreamImpl& s, const void* const* src, void* const* dst) override {
    auto stream = static_cast<cudaStream_t>(s.native_handle());
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
};

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
  try {
    count_nodes(body_graph, body_counts, where);
    GRAPH_CHECK(cudaGraphCreate(&graph, 0), where);
    // Copies in, the body after all of them, copies out after it. Until the first replay sets
    // them, each copy node copies its own buffer onto itself: never run.
    for (const auto& b : io.inputs) {
      cudaGraphNode_t n = nullptr;
      GRAPH_CHECK(cudaGraphAddMemcpyNode1D(&n, graph, nullptr, 0, b.ptr, b.ptr, b.bytes, cudaMemcpyDeviceToDevice), where);
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
    GRAPH_CHECK(cudaGraphInstantiate(&exec, graph, 0), where);
  } catch (...) {
    if (graph) cudaGraphDestroy(graph);
    cudaGraphDestroy(body_graph);
    throw;
  }
  cudaGraphDestroy(body_graph);  // the child node holds its own copy
  return std::make_unique<CudaGraphExec>(graph, exec, std::move(in_nodes), std::move(out_nodes), io, where,
                                         body_counts);
}

}  // namespace streampool::detail
