// The CUDA backend's entry points in a build without CUDA (Note [Backend registry]): there
// is no CUDA backend, so no CUDA device, stream or tensor can exist and nothing below is
// reached with work to do.

#include "backend/cuda/exit_gate.h"
#include "backend/registry.h"

namespace streampool::detail {

Backend* cuda_backend_if_built() { return nullptr; }

CudaCallScope::CudaCallScope() : slot_(nullptr) {}
CudaCallScope::~CudaCallScope() = default;
void install_exit_gate() {}
void close_exit_gate() {}  // no CUDA: nothing can be mid-call in a CUDA library

}  // namespace streampool::detail
