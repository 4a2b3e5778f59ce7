#pragma once
// The GEMM workspace of a graph being captured. Internal.
//
// A captured cuBLASLt GEMM keeps the workspace pointer it was captured with. The eager
// workspaces belong to a thread's lease (Note [BLAS handles and workspaces]) and go back to the
// allocator when the thread ends, while a graph outlives the thread that captured it. So a
// capture hands the GEMMs a workspace of its instance's own for its duration.

#include <cstddef>

namespace streampool::detail {

inline constexpr std::size_t kGemmWorkspaceBytes = 32u << 20;  // what cuBLASLt asks for on Hopper

class GemmWorkspaceScope {
 public:
  explicit GemmWorkspaceScope(void* workspace);  // kGemmWorkspaceBytes at `workspace`
  ~GemmWorkspaceScope();
  GemmWorkspaceScope(const GemmWorkspaceScope&) = delete;
  GemmWorkspaceScope& operator=(const GemmWorkspaceScope&) = delete;

 private:
  void* previous_;
};

// The calling thread's workspace for GEMMs inside a capture, or nullptr.
void* gemm_workspace_override();

}  // namespace streampool::detail
