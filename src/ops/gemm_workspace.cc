#include "ops/gemm_workspace.h"

namespace streampool::detail {
namespace {
thread_local void* tls_workspace = nullptr;  // this thread's only
}  // namespace

GemmWorkspaceScope::GemmWorkspaceScope(void* workspace) : previous_(tls_workspace) { tls_workspace = workspace; }
GemmWorkspaceScope::~GemmWorkspaceScope() { tls_workspace = previous_; }
void* gemm_workspace_override() { return tls_workspace; }

}  // namespace streampool::detail
